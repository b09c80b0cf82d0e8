// Package pinger measures traffic through a tunnel for tests: it sends a
// numbered UDP datagram to an echo every interval and records the echoes
// and the longest silence between them, so that a test can assert that
// traffic kept flowing across a reload or a key rotation.
package pinger
