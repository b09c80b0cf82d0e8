// Package bind provides the gateway's UDP sockets.
//
// wireguard-go's default bind listens on a port on every address, even on a
// side that never accepts a connection. Connected instead gives the dialling
// gateway one UDP socket connect()ed to its peer's endpoint: the kernel then
// delivers only datagrams from that address and port, and nothing on the
// node is listening for anyone else. That is what "zero inbound exposure"
// means for the EKS side.
//
// Listening is the side its peers dial: one dual-stack socket where the
// default bind opens one per address family, with the same batching, UDP
// GSO/GRO and drop counter as Connected, and batches of 64 instead of 128:
// wireguard-go holds a 64 KiB buffer for every datagram a receive function
// can be handed. Counted wraps either and reports what each send and
// receive carried, so that the netstack can bound the packets WireGuard
// holds.
package bind
