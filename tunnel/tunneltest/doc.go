// Package tunneltest runs real tunnel gateways for the key rotation
// tests: two gateways ("aks" listens and forwards a UDP port, "eks" dials
// and exposes a UDP echo), each configured from a key store directory and
// reloading it with a tunnel.Watcher, as a pod with its Secret mounted
// does, and checks of the keys the stores and the gateways hold. Its own
// tests drive keys/rotate and keys/kube against those gateways, so that
// the keys tree needs no gateway to build its tests.
package tunneltest
