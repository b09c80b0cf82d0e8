// Package tunnel is the gateway: userspace WireGuard (wireguard-go) on a
// gVisor netstack, carrying exactly the flows its configuration names.
//
// A Gateway is also an embedded API in the spirit of Tailscale's tsnet: fill
// in its options, Start it, then Dial peers through the tunnel, or Listen and
// ListenPacket on its tunnel address, all without a TUN device or any
// privilege.
//
//	gw := &tunnel.Gateway{Logger: logger}
//	if err := gw.Start(ctx, cfg); err != nil { ... }
//	defer gw.Close()
//	conn, err := gw.Dial(ctx, "tcp", "10.99.0.1:7000")
//
// ExampleGateway runs two gateways in one process and connects them.
//
// What the gateway carries, and nothing else:
//   - expose rules: a port on the tunnel address reaches one target in the
//     gateway's own network, for named peers only (checked on every packet
//     at netstack ingress, see package policy);
//   - forward rules: a local listener reaches a peer's tunnel address and
//     port;
//   - flows the embedding program opens with Dial, Listen and ListenPacket.
package tunnel
