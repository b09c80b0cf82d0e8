package tunnel

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"mime"
	"net/http"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/tunnel-dev/tunnel/tunnel/audit"
	"github.com/tunnel-dev/tunnel/tunnel/config"
)

// AuditRequest asks the gateway to probe a peer from inside the tunnel
// (POST /audit on the admin endpoint, or Gateway.Audit).
type AuditRequest struct {
	// Peer names the configured peer; empty means the only one.
	Peer string `json:"peer,omitempty"`
	// Target is the peer's tunnel address; empty means the address the
	// forward rules reach it at, else its single-address allowed IP.
	Target netip.Addr `json:"target,omitzero"`
	// TCPPorts are the TCP ports probed on Target; empty means all.
	TCPPorts []uint16 `json:"tcp_ports,omitempty"`
	// UDPPorts are probed besides the forward rules' and a common list.
	UDPPorts []uint16 `json:"udp_ports,omitempty"`
	// Others are further addresses to probe, besides the edges of the
	// peer's allowed ranges. They must lie in the peer's allowed IPs:
	// WireGuard sends this gateway's packets to a peer only for those.
	Others []netip.Addr `json:"others,omitempty"`
	// Expect are answers allowed besides the forward rules' targets.
	Expect []audit.Expect `json:"expect,omitempty"`
	// Timeout bounds each probe, as a Go duration ("1s"); empty means
	// audit.DefaultTimeout.
	Timeout     string `json:"timeout,omitempty"`
	Concurrency int    `json:"concurrency,omitempty"`
}

// AuditReport is what Audit found.
type AuditReport struct {
	Peer string `json:"peer"`
	audit.Report
	// Expected are the answers allowed: the forward rules' targets on the
	// peer and the request's Expect.
	Expected []audit.Expect `json:"expected"`
	// Unexpected answered although nothing expects them. Empty means the
	// peer exposes nothing beyond this gateway's rules.
	Unexpected []audit.Finding `json:"unexpected"`
	// Skipped are requested addresses not probed, with why.
	Skipped []string `json:"skipped,omitempty"`
}

// auditMaxDuration bounds one audit, however slow its probes.
const auditMaxDuration = 15 * time.Minute

// Audit probes a peer from inside the tunnel with the gateway's own
// netstack and session: every TCP port (or those asked), the UDP ports
// that matter, and other addresses of the peer's allowed range. It dials
// as the embedding program's Dial does, from this gateway's tunnel
// address, so it sees what the peer's policy lets this gateway reach; the
// gateway's own policy lets only the probed peer's replies in.
func (g *Gateway) Audit(ctx context.Context, req AuditRequest) (AuditReport, error) {
	if !g.running() {
		return AuditReport{}, ErrNotRunning
	}
	c := g.Config()
	p, err := auditPeer(c, req.Peer)
	if err != nil {
		return AuditReport{}, err
	}
	out := AuditReport{Peer: p.Name, Expected: slices.Clone(req.Expect)}
	var fromRules []netip.Addr
	for _, f := range c.Forward {
		if f.Peer == p.Name {
			out.Expected = append(out.Expected, audit.Expect{Protocol: f.Protocol, Addr: f.To})
			fromRules = append(fromRules, f.To.Addr())
		}
	}
	target := req.Target
	switch {
	case target.IsValid():
	case len(fromRules) > 0:
		target = fromRules[0]
	default:
		for _, pfx := range p.AllowedIPs {
			if pfx.IsSingleIP() {
				target = pfx.Addr()
				break
			}
		}
	}
	if !target.IsValid() {
		return AuditReport{}, fmt.Errorf("audit: peer %q: no target: no forward rule reaches it and no allowed IP is a single address; name the peer's tunnel address", p.Name)
	}
	if !inPrefixes(p.AllowedIPs, target) {
		return AuditReport{}, fmt.Errorf("audit: target %s is not in peer %q's allowed IPs %v", target, p.Name, p.AllowedIPs)
	}
	opts := audit.Options{Target: target, TCPPorts: req.TCPPorts, UDPPorts: req.UDPPorts, Concurrency: req.Concurrency}
	if req.Timeout != "" {
		if opts.Timeout, err = time.ParseDuration(req.Timeout); err != nil || opts.Timeout <= 0 || opts.Timeout > time.Minute {
			return AuditReport{}, fmt.Errorf("audit: timeout %q: want a duration between 1ms and 1m", req.Timeout)
		}
	}
	if req.Concurrency < 0 || req.Concurrency > audit.MaxConcurrency {
		return AuditReport{}, fmt.Errorf("audit: concurrency %d: want 1 to %d", req.Concurrency, audit.MaxConcurrency)
	}
	for _, a := range slices.Concat(rangeEdges(p.AllowedIPs), req.Others) {
		a = a.Unmap()
		switch {
		case a == target || slices.Contains(opts.Others, a):
		case !inPrefixes(p.AllowedIPs, a):
			out.Skipped = append(out.Skipped, fmt.Sprintf("%s: outside peer %s's allowed IPs %v, so WireGuard never sends it this gateway's packets", a, p.Name, p.AllowedIPs))
		case slices.Contains(c.Interface.Addresses, a):
			out.Skipped = append(out.Skipped, fmt.Sprintf("%s: this gateway's own address", a))
		default:
			opts.Others = append(opts.Others, a)
		}
	}
	ctx, cancel := context.WithTimeout(ctx, auditMaxDuration)
	defer cancel()
	if err := g.auditSession(ctx, p.Name, target); err != nil {
		return AuditReport{}, err
	}
	g.log.Info("audit started", "peer", p.Name, "target", target, "others", opts.Others)
	out.Report, err = audit.Run(ctx, g.Dial, opts, out.Expected)
	out.Unexpected = out.Report.Unexpected(out.Expected)
	if err != nil {
		return out, fmt.Errorf("audit of peer %q stopped early: %w", p.Name, err)
	}
	g.log.Info("audit finished", "peer", p.Name, "tcp_probes", out.TCPProbes, "udp_probes", out.UDPProbes,
		"answered", len(out.Answered), "unexpected", len(out.Unexpected), "failed", out.Failed,
		"duration", out.Duration.Round(time.Millisecond).String())
	return out, nil
}

// auditSessionWait bounds the wait for a session before an audit, and
// auditSessionFresh is how recent a handshake must be to count as one
// (WireGuard drops a session three minutes after its handshake).
const (
	auditSessionWait  = 15 * time.Second
	auditSessionFresh = 150 * time.Second
)

// auditSession makes sure the gateway has a WireGuard session with the
// peer before probing it: without one, every probe would be lost and the
// audit would report silence it did not measure. If the last handshake is
// old, one datagram to the target makes WireGuard start one.
func (g *Gateway) auditSession(ctx context.Context, peer string, target netip.Addr) error {
	ctx, cancel := context.WithTimeout(ctx, auditSessionWait)
	defer cancel()
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	for triggered := false; ; {
		if time.Since(g.lastHandshake(peer)) < auditSessionFresh {
			return nil
		}
		if !triggered {
			triggered = true
			if c, err := g.Dial(ctx, "udp", netip.AddrPortFrom(target, 9).String()); err == nil { // discard
				_, _ = c.Write([]byte{0})
				c.Close()
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("audit: no WireGuard session with peer %q: no handshake within %s, so every probe would be lost (see tunnel status, and the peer's log)", peer, auditSessionWait)
		case <-t.C:
		}
	}
}

// lastHandshake is the peer's latest handshake over its keys, or zero.
func (g *Gateway) lastHandshake(name string) time.Time {
	st, err := g.deviceState()
	if err != nil {
		return time.Time{}
	}
	for _, p := range g.peerList() {
		if p.name == name {
			latest, _ := p.handshake(st)
			return latest
		}
	}
	return time.Time{}
}

func auditPeer(c *config.Config, name string) (*config.Peer, error) {
	if name == "" {
		if len(c.Peers) != 1 {
			return nil, fmt.Errorf("audit: the gateway has %d peers; name one", len(c.Peers))
		}
		return &c.Peers[0], nil
	}
	p := c.PeerByName(name)
	if p == nil {
		return nil, fmt.Errorf("audit: no peer named %q", name)
	}
	return p, nil
}

func inPrefixes(ps []netip.Prefix, a netip.Addr) bool {
	return slices.ContainsFunc(ps, func(p netip.Prefix) bool { return p.Contains(a) })
}

// rangeEdges are the first and last address of each allowed prefix wider
// than one address: where a peer's stack or a forgotten route is most
// likely to answer.
func rangeEdges(ps []netip.Prefix) []netip.Addr {
	var out []netip.Addr
	for _, p := range ps {
		p = p.Masked()
		if p.IsSingleIP() {
			continue
		}
		first, last := p.Addr(), lastAddr(p)
		out = append(out, first, last)
	}
	return out
}

// lastAddr is the highest address of p.
func lastAddr(p netip.Prefix) netip.Addr {
	b := p.Masked().Addr().AsSlice()
	for i := p.Bits(); i < len(b)*8; i++ {
		b[i/8] |= 1 << (7 - i%8)
	}
	a, _ := netip.AddrFromSlice(b)
	return a
}

// auditHandler serves POST /audit: one audit at a time, JSON in and out,
// refused from a browser (an Origin header, or a body that is not JSON).
type auditHandler struct {
	g    *Gateway
	busy sync.Mutex
}

func (h *auditHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		http.Error(w, "audit: POST only", http.StatusMethodNotAllowed)
		return
	}
	if r.Header.Get("Origin") != "" {
		http.Error(w, "audit: refused: the request comes from a browser page", http.StatusForbidden)
		return
	}
	if mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); mt != "application/json" {
		http.Error(w, "audit: Content-Type must be application/json", http.StatusUnsupportedMediaType)
		return
	}
	var req AuditRequest
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 64<<10))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		http.Error(w, "audit: reading the request: "+err.Error(), http.StatusBadRequest)
		return
	}
	if !h.busy.TryLock() {
		http.Error(w, "audit: another audit is running", http.StatusConflict)
		return
	}
	defer h.busy.Unlock()
	// The admin server's write timeout is shorter than a full sweep.
	_ = http.NewResponseController(w).SetWriteDeadline(time.Now().Add(auditMaxDuration + time.Minute))
	rep, err := h.g.Audit(r.Context(), req)
	if err != nil && rep.Peer == "" {
		status := http.StatusBadRequest
		if errors.Is(err, ErrNotRunning) {
			status = http.StatusServiceUnavailable
		}
		http.Error(w, err.Error(), status)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	if err != nil {
		w.WriteHeader(http.StatusInternalServerError)
	}
	_ = json.NewEncoder(w).Encode(rep)
}
