package tunnel

import (
	"net/netip"
	"slices"
	"time"

	"github.com/tunnel-dev/tunnel/tunnel/forward"
	"github.com/tunnel-dev/tunnel/tunnel/policy"
)

// Status is what the gateway reports at /status and `tunnel status` shows.
type Status struct {
	Name       string        `json:"name"`
	PublicKey  string        `json:"public_key"`
	ListenPort int           `json:"listen_port"`
	Addresses  []netip.Addr  `json:"addresses"`
	Uptime     time.Duration `json:"uptime_ns"`
	Peers      []PeerStatus  `json:"peers"`
	Rules      []RuleStatus  `json:"rules"`
	// Ingress counts packets the policy dropped at netstack ingress, by
	// reason.
	Ingress map[string]uint64 `json:"ingress_drops"`
	// WireGuard counts what WireGuard itself refused.
	WireGuard WireGuardCounts `json:"wireguard"`
	// QueueDrops counts outbound packets dropped because WireGuard did not
	// keep up.
	QueueDrops uint64 `json:"netstack_queue_drops"`
	// UDPReceiveDrops counts datagrams the kernel dropped on the
	// gateway's UDP sockets because a receive buffer was full.
	UDPReceiveDrops uint64 `json:"udp_receive_drops"`
	// TunnelSocketDrops counts datagrams from the tunnel dropped because
	// the UDP socket they were for (a rule's or the embedding program's)
	// was not reading fast enough.
	TunnelSocketDrops uint64 `json:"tunnel_socket_drops"`
	// DialOnly is set when the config names no listen port: the socket is
	// connected to the peer, and ListenPort is only its source port.
	DialOnly bool `json:"dial_only"`
}

// WireGuardCounts are refusals counted from wireguard-go.
type WireGuardCounts struct {
	SpoofedSource    uint64 `json:"spoofed_source"`
	HandshakeRefused uint64 `json:"handshake_refused"`
}

// PeerStatus is one peer as WireGuard sees it.
type PeerStatus struct {
	Name string `json:"name"`
	// Key says which of the peer's keys this is: "active", or during a
	// rotation "successor" (staged, not yet used) or "retired" (the
	// successor has taken over; the old key carries nothing).
	Key           string         `json:"key,omitempty"`
	PublicKey     string         `json:"public_key"`
	Endpoint      string         `json:"endpoint,omitempty"`
	LastHandshake time.Time      `json:"last_handshake,omitzero"`
	RxBytes       uint64         `json:"rx_bytes"`
	TxBytes       uint64         `json:"tx_bytes"`
	AllowedIPs    []netip.Prefix `json:"allowed_ips"`
}

// RuleStatus is one rule's flows and counters.
type RuleStatus struct {
	Name     string `json:"name"`
	Kind     string `json:"kind"`
	Protocol string `json:"protocol"`
	From     string `json:"from"`
	To       string `json:"to"`
	forward.Snapshot
	// Denied counts packets that reached an exposed port from a peer not
	// named on the rule.
	Denied uint64 `json:"denied_peer"`
	Error  string `json:"error,omitempty"`
	// Upstream is, for a forward rule with several upstreams, the one new
	// flows use ("eks-b 10.99.0.11:7443"); To is its address. Upstreams
	// lists them all in order, and Failovers counts each move between
	// them.
	Upstream  string           `json:"upstream,omitempty"`
	Upstreams []UpstreamStatus `json:"upstreams,omitempty"`
	Failovers []FailoverStatus `json:"failovers,omitempty"`
}

// UpstreamStatus is one of a forward rule's upstreams.
type UpstreamStatus struct {
	Peer string         `json:"peer"`
	To   netip.AddrPort `json:"to"`
	// Healthy: its peer has been heard from within the bound (see
	// docs/gateway-config.md); Reason says why not.
	Healthy bool   `json:"healthy"`
	Reason  string `json:"reason,omitempty"`
	// SilentFor is how long the peer had been silent at the last poll,
	// when it is unhealthy.
	SilentFor time.Duration `json:"silent_for_ns,omitempty"`
	// InUse: new flows go here.
	InUse bool `json:"in_use"`
}

// FailoverStatus counts a rule's moves from one upstream to another for
// one reason. From and To are peer/address:port.
type FailoverStatus struct {
	From   string `json:"from"`
	To     string `json:"to"`
	Reason string `json:"reason"`
	Count  uint64 `json:"count"`
}

// Status reports the gateway's state now.
func (g *Gateway) Status() Status {
	st := Status{PublicKey: g.PublicKey().String(), Ingress: map[string]uint64{}}
	if c := g.Config(); c != nil {
		st.Name, st.Addresses = c.Interface.Name, c.Interface.Addresses
		st.DialOnly = c.Interface.ListenPort == 0
	}
	if g.running() {
		st.Uptime = time.Since(g.started)
	}
	if ds, err := g.deviceState(); err == nil {
		st.ListenPort = ds.ListenPort
		peers := g.peerList()
		for _, p := range ds.Peers {
			ps := PeerStatus{
				PublicKey:     p.Key.String(),
				Endpoint:      p.Endpoint,
				LastHandshake: p.LastHandshake,
				RxBytes:       p.RxBytes,
				TxBytes:       p.TxBytes,
				AllowedIPs:    p.AllowedIPs,
			}
			for _, cp := range peers {
				switch {
				case p.Key == cp.owner:
					ps.Name, ps.Key = cp.name, "active"
				case slices.Contains(cp.deviceKeys(), p.Key) && cp.owner == cp.key:
					ps.Name, ps.Key = cp.name, "successor"
				case slices.Contains(cp.deviceKeys(), p.Key):
					ps.Name, ps.Key = cp.name, "retired"
				}
			}
			st.Peers = append(st.Peers, ps)
		}
	}
	var denied map[string]uint64
	if g.filter != nil {
		denied = g.filter.Denied()
		for _, r := range policy.Reasons() {
			st.Ingress[r.String()] = g.filter.Count(r)
		}
	}
	for _, r := range g.ruleList() {
		st.Rules = append(st.Rules, r.status(denied))
	}
	st.WireGuard = g.wgc.counts()
	if g.ns != nil {
		st.QueueDrops = g.ns.Stats().QueueDrops
		st.TunnelSocketDrops = g.ns.UDPQueueDrops()
	}
	st.UDPReceiveDrops = udpDrops()
	return st
}
