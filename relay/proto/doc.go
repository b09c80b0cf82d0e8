// Package proto is relay/1, the protocol between relay (the task queue) and
// its workers (bunny): the message schema (relay.proto, generated into
// relay.pb.go by `make proto`), the framing (a uvarint length, then the
// message, with hard size caps), the application error codes, and the QUIC
// and TLS settings both ends use: TLS 1.3 only, ALPN "relay/1", each side
// pinning the other's public key, and QUIC packets sized to cross the
// tunnel's 1420-byte inner MTU without fragmenting.
//
// A call is one bidirectional QUIC stream: the worker writes one Request
// frame and closes its side; relay writes one Response frame and closes
// its side. A malformed or oversized frame resets that stream with
// BAD_FRAME; the connection and its other calls carry on.
//
// Workers use package relay/client rather than this package directly.
package proto
