package demo

import (
	"context"
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"github.com/tunnel-dev/tunnel/keys"
)

// The --ha demo: two gateways a side, each with its own key and tunnel
// address. eks-a and eks-b dial aks-a and aks-b (1 s keepalives, all four
// pairs warm); each AKS gateway forwards bunny's port to eks-a, then
// eks-b; bunny lists both AKS gateways' forward ports. Mid-run the demo
// SIGKILLs aks-a, the gateway bunny starts on, restarts it, and reports
// the longest pause between handled jobs and how long aks-a took to
// rejoin.

// haGateway is one of the four gateways.
type haGateway struct {
	name, addr string
	keys       string // its key directory
	pub        keys.PublicKey
	wg         string // AKS: its WireGuard port
	forward    string // AKS: where bunny reaches relay through it
	admin      string
}

// haSetup is the --ha demo's files and addresses, beside setup's.
type haSetup struct {
	gws []*haGateway // eks-a, eks-b, aks-a, aks-b
}

func (h *haSetup) gw(name string) *haGateway {
	for _, g := range h.gws {
		if g.name == name {
			return g
		}
	}
	return nil
}

// writeHA generates every key and writes every file of the --ha demo.
func (s *setup) writeHA() error {
	var err error
	for _, a := range []*string{&s.relayHTTP, &s.relayAdmin, &s.bunnyAdmin} {
		if *a, err = freeTCP(); err != nil {
			return err
		}
	}
	if s.relayQUIC, err = freeUDP(); err != nil {
		return err
	}
	s.ha = &haSetup{gws: []*haGateway{
		{name: "eks-a", addr: "10.99.0.1"}, {name: "eks-b", addr: "10.99.0.11"},
		{name: "aks-a", addr: "10.99.0.2"}, {name: "aks-b", addr: "10.99.0.12"},
	}}
	for _, g := range s.ha.gws {
		g.keys = s.path(g.name + "-keys")
		if g.pub, err = keys.WriteKeyPair(g.keys, false); err != nil {
			return fmt.Errorf("generating %s's key: %w", g.name, err)
		}
		if g.admin, err = freeTCP(); err != nil {
			return err
		}
		if g.name[:3] == "aks" {
			if g.wg, err = freeUDP(); err != nil {
				return err
			}
			if g.forward, err = freeUDP(); err != nil {
				return err
			}
		}
	}
	if err := s.writeIdentities(); err != nil {
		return err
	}
	eksA, eksB, aksA, aksB := s.ha.gws[0], s.ha.gws[1], s.ha.gws[2], s.ha.gws[3]
	files := map[string]string{
		"workers.yaml": s.workersYAML(),
		"bunny.yaml":   s.bunnyYAML("relay through either aks gateway, the first one first", "["+aksA.forward+", "+aksB.forward+"]"),
	}
	for _, g := range []*haGateway{eksA, eksB} {
		files[g.name+".yaml"] = fmt.Sprintf(`# %s: exposes relay's QUIC port to both aks gateways, and dials both.
interface: {name: %s, privateKeyFile: %s, addresses: [%s]}
peers:
  - {name: aks-a, publicKey: %s, endpoint: "%s", persistentKeepalive: 1s, allowedIPs: [%s/32]}
  - {name: aks-b, publicKey: %s, endpoint: "%s", persistentKeepalive: 1s, allowedIPs: [%s/32]}
expose:
  - {name: relay, protocol: udp, port: %d, target: "%s", peers: [aks-a, aks-b]}
admin: {listen: "%s"}
`, g.name, g.name, g.keys+"/"+keys.PrivateKeyFile, g.addr, aksA.pub, aksA.wg, aksA.addr, aksB.pub, aksB.wg, aksB.addr, relayPort, s.relayQUIC, g.admin)
	}
	for _, g := range []*haGateway{aksA, aksB} {
		files[g.name+".yaml"] = fmt.Sprintf(`# %s: forwards bunny's port to eks-a, then eks-b.
interface: {name: %s, privateKeyFile: %s, listenPort: %s, addresses: [%s]}
peers:
  - {name: eks-a, publicKey: %s, persistentKeepalive: 1s, allowedIPs: [%s/32]}
  - {name: eks-b, publicKey: %s, persistentKeepalive: 1s, allowedIPs: [%s/32]}
forward:
  - name: relay
    protocol: udp
    listen: "%s"
    upstreams: [{peer: eks-a, to: "%s:%d"}, {peer: eks-b, to: "%s:%d"}]
admin: {listen: "%s"}
`, g.name, g.name, g.keys+"/"+keys.PrivateKeyFile, portOf(g.wg), g.addr, eksA.pub, eksA.addr, eksB.pub, eksB.addr, g.forward, eksA.addr, relayPort, eksB.addr, relayPort, g.admin)
	}
	for name, body := range files {
		if err := os.WriteFile(s.path(name), []byte(body), 0o600); err != nil {
			return fmt.Errorf("writing %s: %w", name, err)
		}
	}
	return nil
}

// startGateway starts one of the --ha demo's gateways and waits until it
// is ready.
func startGateway(ctx context.Context, s *setup, bins map[string]string, g *haGateway) (*proc, error) {
	p, err := start("gateway-"+g.name, s.dir, bins["tunnel"], "gateway", "--config", s.path(g.name+".yaml"))
	if err != nil {
		return nil, err
	}
	return p, waitReady(ctx, p, "http://"+g.admin+"/readyz", 20*time.Second)
}

// warm reports whether gateway g has a handshake with both gateways of
// the other side since since, and its upstreams (AKS) are healthy.
func warm(ctx context.Context, g *haGateway, since time.Time) bool {
	st, err := status(ctx, g.admin)
	return err == nil && len(st.Peers) == 2 && st.Warm(since)
}

// waitWarm waits until every gateway in gws is warm, up to timeout.
func waitWarm(ctx context.Context, timeout time.Duration, since time.Time, gws ...*haGateway) error {
	deadline := time.Now().Add(timeout)
	for {
		all := true
		for _, g := range gws {
			all = all && warm(ctx, g, since)
		}
		if all {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the gateways did not all have handshakes with both of the other side's within %v", timeout)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// fault kills aks-a once half the jobs are handled, restarts it, and
// measures the pause and the rejoin.
type fault struct {
	s      *setup
	bins   map[string]string
	procs  *[]*proc
	mu     sync.Mutex
	killed time.Time
	back   time.Time     // when the restarted gateway was started
	rejoin time.Duration // from back until it had both handshakes
	err    error
	done   chan struct{}
}

// inject kills the gateway now and restarts it in the background.
func (f *fault) inject(ctx context.Context, name string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for i, p := range *f.procs {
		if p.name == "gateway-"+name {
			_ = p.cmd.Process.Kill()
			<-p.done
			*f.procs = append((*f.procs)[:i:i], (*f.procs)[i+1:]...)
			break
		}
	}
	f.killed = time.Now()
	go func() {
		defer close(f.done)
		time.Sleep(time.Second)
		g := f.s.ha.gw(name)
		back := time.Now()
		p, err := startGateway(ctx, f.s, f.bins, g)
		f.mu.Lock()
		if p != nil {
			*f.procs = append(*f.procs, p)
		}
		f.back = back
		f.mu.Unlock()
		if err == nil {
			err = waitWarm(ctx, 30*time.Second, back, g)
		}
		f.mu.Lock()
		f.rejoin, f.err = time.Since(back), err
		f.mu.Unlock()
	}()
}

// alive is the processes to watch for an early exit.
func (f *fault) alive() []*proc {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]*proc(nil), *f.procs...)
}

// longestGap is the longest time between two handled jobs at or after
// from.
func longestGap(times []time.Time, from time.Time) time.Duration {
	var gap time.Duration
	prev := from
	for _, t := range times {
		if t.Before(from) {
			continue
		}
		gap = max(gap, t.Sub(prev))
		prev = t
	}
	return gap
}

// startAllHA writes the --ha demo's files and starts relay, the AKS
// gateways, the EKS gateways and bunny, waiting for each and for all four
// pairs of gateways to be handshaken.
func startAllHA(ctx context.Context, s *setup, bins map[string]string, procs *[]*proc) error {
	if err := os.MkdirAll(s.dir, 0o700); err != nil {
		return fmt.Errorf("creating the demo's directory: %w", err)
	}
	if err := s.writeHA(); err != nil {
		return err
	}
	if err := startRelay(ctx, s, bins, procs); err != nil {
		return err
	}
	t0 := time.Now()
	for _, name := range []string{"aks-a", "aks-b", "eks-a", "eks-b"} {
		p, err := startGateway(ctx, s, bins, s.ha.gw(name))
		if p != nil {
			*procs = append(*procs, p)
		}
		if err != nil {
			return err
		}
	}
	if err := waitWarm(ctx, 30*time.Second, t0.Add(-time.Second), s.ha.gws...); err != nil {
		return err
	}
	p, err := start("bunny", s.dir, bins["bunny"], "run", "--config", s.path("bunny.yaml"))
	if err != nil {
		return err
	}
	*procs = append(*procs, p)
	return waitReady(ctx, p, "http://"+s.bunnyAdmin+"/readyz", 20*time.Second)
}

// printHA describes the --ha demo's processes.
func (s *setup) printHA(out io.Writer, slots int, ready time.Duration) {
	fmt.Fprintf(out, "relay        QUIC on %s, producer API on https://%s\n", s.relayQUIC, s.relayHTTP)
	for _, g := range s.ha.gws {
		if g.wg == "" {
			fmt.Fprintf(out, "gateway %s key %s, tunnel address %s; dials aks-a and aks-b; exposes udp/%d → relay\n", g.name, g.pub.Fingerprint(), g.addr, relayPort)
		} else {
			fmt.Fprintf(out, "gateway %s key %s, tunnel address %s; WireGuard on %s; forwards udp %s → eks-a, then eks-b\n", g.name, g.pub.Fingerprint(), g.addr, g.wg, g.forward)
		}
	}
	fmt.Fprintf(out, "bunny        %d slots, relay at %s, then %s (the two aks gateways), connected\n", slots, s.ha.gw("aks-a").forward, s.ha.gw("aks-b").forward)
	fmt.Fprintf(out, "relay, four gateways (all four pairs handshaken) and bunny ready in %v\n\n", ready.Round(time.Millisecond))
}
