// Package tunneltest runs real tunnel gateways for the key rotation
// tests: two gateways ("aks" listens and forwards a UDP port, "eks" dials
// and exposes a UDP echo), each configured from a key store directory and
// reloading it with a tunnel.Watcher, as a pod with its Secret mounted
// does; a kubelet that publishes items into a directory the way kubelet
// updates a Secret volume; and a pinger that measures the longest silence
// of traffic through the tunnel.
package tunneltest
