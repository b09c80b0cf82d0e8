// Package netstack is the gateway's network stack: a gVisor TCP/IP stack
// behind a link endpoint of our own that wireguard-go reads and writes as its
// TUN device, in batches.
//
// It differs from wireguard-go's tun/netstack in what a gateway needs: every
// inbound packet passes a filter before the stack sees it (the gateway's
// policy), the stack has routes only to the peers' tunnel addresses (so it
// cannot reach anything else), the stack and its options are ours to tune,
// and packets cross in batches through a deep queue instead of one at a time
// through an unbuffered channel.
package netstack
