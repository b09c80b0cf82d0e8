// Package rotate replaces one gateway's WireGuard key make-before-break,
// with no moment at which the tunnel lacks a working key pair.
//
// Two key stores take part (see package keys/store): this side's, which
// holds its private.key (and mid-rotation a next.key), and the peer's,
// which holds peer.<name>.pub, the keys the peer accepts for this side.
// Only public keys are written into the peer's store.
//
// A rotation is four steps, each idempotent:
//
//	prepare  this side's store gets next.key (a new private key)
//	stage    the peer's peer.<name>.pub becomes [current, next]; wait until
//	         the peer's gateway lists the successor
//	switch   this side's private.key becomes next.key and next.key goes, in
//	         one conditional write; wait until this side's gateway runs the
//	         new key and the peer's gateway has a handshake on it
//	revoke   the peer's peer.<name>.pub becomes [next]; wait until the peer's
//	         gateway no longer lists the old key
//
// Which step comes next is derived from the two stores alone ([Classify]),
// so a rotation interrupted anywhere is finished by running it again; the
// states off this path (a successor nobody holds, a next.key left beside
// the key it became) have recoveries of their own. Every write keeps this
// side's key, as its store and as its running gateway hold it, among the
// keys the peer accepts, in its store and in its running gateway: before
// writing, the other gateway's /status must show what the write relies on.
package rotate
