// Package producers decides which producer may do what through relay's
// API. The producers file names each producer, the credentials it may
// present, and, per queue, the actions it may take (enqueue, read, cancel,
// retry). Everything not listed is refused.
//
//	producers:
//	  - name: billing
//	    pins: [sha256/…]         # client certificates (tunnel keys identity)
//	    tokens: [sha256:…]       # hashes of bearer tokens (relay producers token)
//	    queues:
//	      invoices: [enqueue, read]
//	      "*": [read]            # every queue
//
// A credential is a pin (the SHA-256 of a client certificate's public key,
// proven by the TLS handshake) or the SHA-256 of a bearer token: relay
// never stores a token, only its hash, so the file reveals no credential.
// NewToken makes a token and its hash. The configuration is one file or a
// directory of *.yaml and *.yml files read as one (internal/filewatch).
// Parsing is strict and bounded (MaxFileSize a file, MaxDirSize a
// directory): an unknown field, a bad pin or hash, an unknown action, or
// a name or credential given to two producers, in one file or two, is an
// error naming the field and its line (and both files). A Watcher rereads
// the files when their contents change, so editing them
// grants or revokes without a restart, and keeps the running configuration,
// saying why, when the new one is bad.
package producers
