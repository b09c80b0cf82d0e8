// Package server is relay's worker endpoint: QUIC (ALPN relay/1, TLS 1.3,
// mutual authentication by pinned keys) in front of the queue.
//
// A worker is known by the pin of the certificate it presents; a pin the
// workers configuration does not list fails the handshake. Each call is
// one bidirectional stream holding one Request frame and one Response
// frame; the server checks, per call, that the worker may take that action
// on that queue, and refuses anything else with UNAUTHORIZED (counted in
// relay_refused_total). A malformed or oversized frame resets its stream
// with BAD_FRAME and nothing else. When a pin is removed from the workers
// configuration, connections authenticated with it are closed with
// CREDENTIALS_REVOKED; the worker's leases belong to its name and survive
// a reconnect with its new key.
//
// Serve runs on any net.PacketConn — a kernel UDP socket, or a netstack
// socket with only ReadFrom, WriteTo and deadlines — and ListenAndServe
// opens a UDP socket first.
package server
