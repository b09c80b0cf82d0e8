// Package forward carries flows between two sides of a gateway rule: TCP
// connections copied both ways with half-close honoured, and UDP datagrams
// in per-source sessions that expire when idle. It does not know which side
// is the tunnel: an expose rule listens on the netstack and dials the
// cluster, a forward rule listens in the cluster and dials the netstack.
package forward
