// Package e2e holds the tests that run the real binaries the way users do:
// in Linux network namespaces standing in for two clusters, against real
// peers we did not write (Debian's wireguard-go and wg). They need root and
// skip, saying why, without it; CI runs them.
package e2e
