// Package auth decides which worker may do what: the workers file names
// each worker, the pins (public-key hashes) its QUIC identity may present,
// and, per queue, the actions it may take (lease, heartbeat, complete,
// fail). Everything not listed is refused.
//
//	workers:
//	  - name: bunny
//	    pins: [sha256/…, sha256/…]   # old and new during a key rotation
//	    queues:
//	      default: [lease, heartbeat, complete, fail]
//
// The path may be one file or a directory of *.yaml / *.yml files (as a
// mounted ConfigMap or Secret is); names starting with "." are skipped.
// Parsing is strict: an unknown field, a bad pin, an unknown action, a
// pin given to two workers or a value still marked REPLACE is a problem;
// every problem of every file is reported at once, each naming its file,
// line and field, in the format of the gateway's and bunny's config files
// (internal/yamlcheck). A Watcher rereads the path when its contents change (it hashes
// contents, so kubelet's ..data symlink swap is seen) and keeps the running
// configuration, saying why, when the new one is bad.
package auth
