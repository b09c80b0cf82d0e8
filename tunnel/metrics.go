package tunnel

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/tunnel-dev/tunnel/tunnel/forward"
	"github.com/tunnel-dev/tunnel/tunnel/policy"
)

// gatewayCollector reads the gateway's counters at scrape time, so metrics
// and /status come from the same numbers.
type gatewayCollector struct {
	g *Gateway

	up, peerHandshake, peerRx, peerTx                       *prometheus.Desc
	ruleActive, ruleFlows, ruleBytes, ruleDrops, ruleDenied *prometheus.Desc
	ingress, wgRefused, nsPackets, nsBytes, nsQueueDrops    *prometheus.Desc
	udpDrops, ruleFailovers, nsQueued, nsBudgetResets       *prometheus.Desc
}

// ruleLabels are on every tunnel_rule_* series, before the series' own
// dimension, so rule metrics join and aggregate alike.
func ruleLabels(extra ...string) []string {
	return append([]string{"rule", "kind", "protocol"}, extra...)
}

func (g *Gateway) registerMetrics() {
	c := &gatewayCollector{
		g:             g,
		up:            prometheus.NewDesc("tunnel_gateway_up", "1 while the gateway is running.", []string{"name"}, nil),
		peerHandshake: prometheus.NewDesc("tunnel_peer_last_handshake_timestamp_seconds", "Unix time of the peer's last completed handshake; 0 if none.", []string{"peer"}, nil),
		peerRx:        prometheus.NewDesc("tunnel_peer_receive_bytes_total", "WireGuard bytes received from the peer.", []string{"peer"}, nil),
		peerTx:        prometheus.NewDesc("tunnel_peer_transmit_bytes_total", "WireGuard bytes sent to the peer.", []string{"peer"}, nil),
		ruleActive:    prometheus.NewDesc("tunnel_rule_active_flows", "Flows (TCP connections, UDP sessions) open on the rule.", ruleLabels(), nil),
		ruleFlows:     prometheus.NewDesc("tunnel_rule_flows_total", "Flows the rule has carried.", ruleLabels(), nil),
		ruleBytes:     prometheus.NewDesc("tunnel_rule_bytes_total", "Payload bytes the rule has carried; up is from the listening side.", ruleLabels("direction"), nil),
		ruleDrops:     prometheus.NewDesc("tunnel_rule_drops_total", "Flows or datagrams the rule dropped, by reason.", ruleLabels("reason"), nil),
		ruleFailovers: prometheus.NewDesc("tunnel_rule_failovers_total", "Moves of a forward rule's new flows from one upstream (peer/address:port) to another, by reason: no_handshake, keepalive_missed, or recovered (back to a preferred upstream).", ruleLabels("from", "to", "reason"), nil),
		ruleDenied:    prometheus.NewDesc("tunnel_rule_denied_packets_total", "Packets that reached an exposed port from a peer not named on the rule.", ruleLabels(), nil),
		ingress:       prometheus.NewDesc("tunnel_ingress_dropped_packets_total", "Packets from the tunnel the policy dropped before the netstack, by reason.", []string{"reason"}, nil),
		wgRefused:     prometheus.NewDesc("tunnel_wireguard_refused_packets_total", "Packets WireGuard refused, by reason: spoofed_source (an inner source outside the peer's allowed IPs), handshake_refused (a handshake from an unknown key).", []string{"reason"}, nil),
		nsPackets:     prometheus.NewDesc("tunnel_netstack_packets_total", "Packets between WireGuard and the netstack.", []string{"direction"}, nil),
		nsBytes:       prometheus.NewDesc("tunnel_netstack_bytes_total", "Bytes between WireGuard and the netstack.", []string{"direction"}, nil),
		nsQueueDrops:  prometheus.NewDesc("tunnel_netstack_queue_dropped_packets_total", "Outbound packets dropped because WireGuard did not keep up.", nil, nil),
		nsQueued:      prometheus.NewDesc("tunnel_netstack_queued_bytes", "Bytes waiting in the netstack's outbound queue for WireGuard.", nil, nil),
		nsBudgetResets: prometheus.NewDesc("tunnel_netstack_budget_resets_total",
			"Times the netstack stopped waiting for WireGuard to give back packet buffers (after 20 ms) and started its count again, by direction: packets WireGuard dropped on the way.", []string{"direction"}, nil),
		udpDrops: prometheus.NewDesc("tunnel_udp_receive_dropped_datagrams_total", "Datagrams the kernel dropped on the gateway's UDP sockets: a receive buffer was full (raise net.core.rmem_max on the node).", nil, nil),
	}
	// A registry shared by two gateways (tests) keeps the first; the
	// second's status is still on /status.
	_ = g.Registry.Register(c)
}

func (c *gatewayCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.up, c.peerHandshake, c.peerRx, c.peerTx, c.ruleActive, c.ruleFlows,
		c.ruleBytes, c.ruleDrops, c.ruleDenied, c.ruleFailovers, c.ingress, c.wgRefused, c.nsPackets, c.nsBytes, c.nsQueueDrops, c.nsQueued, c.nsBudgetResets, c.udpDrops} {
		ch <- d
	}
}

func (c *gatewayCollector) Collect(ch chan<- prometheus.Metric) {
	g := c.g
	up := 0.0
	if g.running() {
		up = 1
	}
	ch <- prometheus.MustNewConstMetric(c.up, prometheus.GaugeValue, up, g.Config().Interface.Name)
	st := g.Status()
	for _, p := range st.Peers {
		name := p.Name
		if name == "" {
			name = p.PublicKey
		}
		hs := 0.0
		if !p.LastHandshake.IsZero() {
			hs = float64(p.LastHandshake.UnixNano()) / 1e9
		}
		ch <- prometheus.MustNewConstMetric(c.peerHandshake, prometheus.GaugeValue, hs, name)
		ch <- prometheus.MustNewConstMetric(c.peerRx, prometheus.CounterValue, float64(p.RxBytes), name)
		ch <- prometheus.MustNewConstMetric(c.peerTx, prometheus.CounterValue, float64(p.TxBytes), name)
	}
	for _, r := range st.Rules {
		ch <- prometheus.MustNewConstMetric(c.ruleActive, prometheus.GaugeValue, float64(r.Active), r.Name, r.Kind, r.Protocol)
		ch <- prometheus.MustNewConstMetric(c.ruleFlows, prometheus.CounterValue, float64(r.Flows), r.Name, r.Kind, r.Protocol)
		ch <- prometheus.MustNewConstMetric(c.ruleBytes, prometheus.CounterValue, float64(r.BytesUp), r.Name, r.Kind, r.Protocol, "up")
		ch <- prometheus.MustNewConstMetric(c.ruleBytes, prometheus.CounterValue, float64(r.BytesDown), r.Name, r.Kind, r.Protocol, "down")
		for _, d := range forward.Drops() {
			ch <- prometheus.MustNewConstMetric(c.ruleDrops, prometheus.CounterValue, float64(r.Drops[d.String()]), r.Name, r.Kind, r.Protocol, d.String())
		}
		for _, f := range r.Failovers {
			ch <- prometheus.MustNewConstMetric(c.ruleFailovers, prometheus.CounterValue, float64(f.Count), r.Name, r.Kind, r.Protocol, f.From, f.To, f.Reason)
		}
		if r.Kind == kindExpose {
			ch <- prometheus.MustNewConstMetric(c.ruleDenied, prometheus.CounterValue, float64(r.Denied), r.Name, r.Kind, r.Protocol)
		}
	}
	for _, reason := range policy.Reasons() {
		ch <- prometheus.MustNewConstMetric(c.ingress, prometheus.CounterValue, float64(st.Ingress[reason.String()]), reason.String())
	}
	ch <- prometheus.MustNewConstMetric(c.wgRefused, prometheus.CounterValue, float64(st.WireGuard.SpoofedSource), "spoofed_source")
	ch <- prometheus.MustNewConstMetric(c.wgRefused, prometheus.CounterValue, float64(st.WireGuard.HandshakeRefused), "handshake_refused")
	if g.ns != nil {
		ns := g.ns.Stats()
		ch <- prometheus.MustNewConstMetric(c.nsPackets, prometheus.CounterValue, float64(ns.PacketsIn), "in")
		ch <- prometheus.MustNewConstMetric(c.nsPackets, prometheus.CounterValue, float64(ns.PacketsOut), "out")
		ch <- prometheus.MustNewConstMetric(c.nsBytes, prometheus.CounterValue, float64(ns.BytesIn), "in")
		ch <- prometheus.MustNewConstMetric(c.nsBytes, prometheus.CounterValue, float64(ns.BytesOut), "out")
		ch <- prometheus.MustNewConstMetric(c.nsQueueDrops, prometheus.CounterValue, float64(ns.QueueDrops))
		ch <- prometheus.MustNewConstMetric(c.nsQueued, prometheus.GaugeValue, float64(ns.QueuedBytes))
		ch <- prometheus.MustNewConstMetric(c.nsBudgetResets, prometheus.CounterValue, float64(ns.OutBudgetResets), "out")
		ch <- prometheus.MustNewConstMetric(c.nsBudgetResets, prometheus.CounterValue, float64(ns.InBudgetResets), "in")
	}
	ch <- prometheus.MustNewConstMetric(c.udpDrops, prometheus.CounterValue, float64(st.UDPReceiveDrops))
}
