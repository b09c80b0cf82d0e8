// Package relaytest runs a real relay (bbolt store, queue, workers-file
// watcher, QUIC server) inside the test process on loopback, for the
// tests of relay's server and client and of bunny. It can be stopped
// gracefully, killed abruptly and started again on the same file and
// port, and its workers file rewritten while it runs.
//
// Start ties a relay to a test: a failure fails the test and the relay
// stops when the test ends. New starts one without a test (for an
// Example); its helpers then panic on failure, and Close stops it.
package relaytest
