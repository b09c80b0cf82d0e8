// Package relaytest runs a real relay (bbolt store, queue, QUIC server) in
// the test process on loopback, for bunny's tests: it can be stopped
// abruptly and started again on the same file and port.
package relaytest
