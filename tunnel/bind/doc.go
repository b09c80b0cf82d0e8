// Package bind provides the UDP socket for a gateway that only dials.
//
// wireguard-go's default bind listens on a port on every address, even on a
// side that never accepts a connection. Connected instead gives the dialling
// gateway one UDP socket connect()ed to its peer's endpoint: the kernel then
// delivers only datagrams from that address and port, and nothing on the
// node is listening for anyone else. That is what "zero inbound exposure"
// means for the EKS side.
package bind
