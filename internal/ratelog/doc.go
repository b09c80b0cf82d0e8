// Package ratelog decides which of many repeated log lines to write: at
// most one per key (a source address, a key's pin) per interval, with a
// count of the ones left out, so a peer retrying a refused handshake every
// few seconds gives one line per interval instead of one per retry.
package ratelog
