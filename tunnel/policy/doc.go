// Package policy decides, for each packet that WireGuard has decrypted, whether
// the gateway's netstack may see it. It is the gateway's only firewall, and
// it is a strict one: a packet passes only if it is TCP or UDP to one of the
// gateway's own tunnel addresses and either reaches an exposed port from a
// source address belonging to a peer named on that port's rule, or comes
// back from a peer address and port that the gateway itself dials, to a
// local port that holds a flow to it. Nothing else reaches the stack: no
// other port, no other destination (nothing is routed), no ICMP, no
// fragments, no IPv4 options or IPv6 extension headers, no UDP whose length
// field disagrees with the datagram. Every drop is counted by reason and
// answered with nothing.
//
// WireGuard has already bound the inner source address to the peer's key
// (cryptokey routing drops a packet whose source is outside the sending
// peer's allowed IPs), so a source address here is as good as the key.
package policy
