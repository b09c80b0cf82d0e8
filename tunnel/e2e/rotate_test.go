package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tunnel-dev/tunnel/internal/netns"
	"github.com/tunnel-dev/tunnel/internal/testutil"
	"github.com/tunnel-dev/tunnel/keys"
	"github.com/tunnel-dev/tunnel/tunnel"
)

// adminProxy makes a gateway's admin address inside ns reachable from
// this namespace, as `kubectl port-forward` would, and returns its URL.
func (c *clusters) adminProxy(ns, addr string) string {
	c.t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		c.t.Fatal(err)
	}
	c.t.Cleanup(func() { ln.Close() })
	dial := dialIn(ns)
	go func() {
		for {
			in, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer in.Close()
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				out, err := dial(ctx, "tcp", addr)
				cancel()
				if err != nil {
					return
				}
				defer out.Close()
				go func() { _, _ = io.Copy(out, in) }()
				_, _ = io.Copy(in, out)
			}()
		}
	}()
	return "http://" + ln.Addr().String()
}

// TestClusterRotationUnderJobs rotates the bunny side's key, then the
// relay side's, with `tunnel keys rotate` while jobs flow from relay to
// bunny through the gateways. No job may fail or be lost; the longest
// pause between two handled jobs is measured. Afterwards a gateway holding
// the relay side's old key gets no handshake.
func TestClusterRotationUnderJobs(t *testing.T) {
	if testing.Short() {
		t.Skip("the rotation suite takes a minute; skipped with -short")
	}
	c := startClusters(t)
	h := c.startHandler()
	c.startBunny()
	eksAdmin, aksAdmin := c.adminProxy(c.eks, c.eksGWAdmin), c.adminProxy(c.aks, c.aksGWAdmin)
	eksStore, aksStore := filepath.Join(c.dir, "eks-keys"), filepath.Join(c.dir, "aks-keys")
	oldEKS, err := os.ReadFile(filepath.Join(eksStore, keys.PrivateKeyFile))
	if err != nil {
		t.Fatal(err)
	}

	const jobs = 4000
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	p := c.produce(ctx, jobs, submitPerSec)
	testutil.EventuallyEvery(t, time.Minute, 100*time.Millisecond, "jobs flowing", func() bool { return h.all.Load() >= 200 })

	rotate := func(side, store, peerStore, status, peerStatus string) (time.Time, time.Time) {
		t.Helper()
		start := time.Now()
		cmd := exec.Command(bin(t, "tunnel"), "keys", "rotate", "--store", "dir:"+store, "--peer-store", "dir:"+peerStore,
			"--status", status, "--peer-status", peerStatus, "--timeout", "1m")
		out, err := cmd.CombinedOutput()
		t.Logf("rotating %s's key (%v):\n%s", side, time.Since(start).Round(time.Millisecond), out)
		if err != nil {
			t.Fatalf("tunnel keys rotate (%s): %v", side, err)
		}
		if !strings.Contains(string(out), "done: ") {
			t.Fatalf("rotation of %s did not say done", side)
		}
		return start, time.Now()
	}
	aStart, aEnd := rotate("aks (bunny side)", aksStore, eksStore, aksAdmin, eksAdmin)
	testutil.EventuallyEvery(t, time.Minute, 100*time.Millisecond, "jobs after the first rotation", func() bool { return h.all.Load() >= int64(jobs/2) })
	eStart, eEnd := rotate("eks (relay side)", eksStore, aksStore, eksAdmin, aksAdmin)

	<-p.done
	if p.err != nil {
		t.Fatal(p.err)
	}
	if retried, _ := c.verifyJobs(ctx, p, h, jobs, 2*time.Minute); retried > 0 {
		t.Fatalf("%d jobs needed a second attempt, want none", retried)
	}
	stallA, stallE := h.longestGap(aStart, aEnd), h.longestGap(eStart, eEnd)
	t.Logf("%d jobs, every one succeeded at its first attempt; longest pause between handled jobs: %v rotating aks, %v rotating eks (jobs arrive every %v)",
		jobs, stallA.Round(time.Millisecond), stallE.Round(time.Millisecond), time.Second/submitPerSec)

	// A gateway with eks's old key, in eks, trying aks: no handshake.
	impostor := filepath.Join(c.dir, "impostor")
	if err := os.MkdirAll(impostor, 0o700); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(impostor, keys.PrivateKeyFile), string(oldEKS))
	aksNow := gatewayStatus(t, c.aks, c.aksGWAdmin)
	writeFile(t, filepath.Join(impostor, "gw.yaml"), fmt.Sprintf(`
interface: {name: %s, privateKeyFile: %s, addresses: [10.99.0.1]}
peers:
  - {name: aks, publicKey: %s, endpoint: "%s:%s", persistentKeepalive: 1s, allowedIPs: [10.99.0.2/32]}
admin: {listen: "127.0.0.1:9092"}
`, netns.Name("timp"), filepath.Join(impostor, keys.PrivateKeyFile), aksNow.PublicKey, aksVeth, wgPort))
	c.startIn(c.eks, "impostor", bin(t, "tunnel"), "gateway", "--config", filepath.Join(impostor, "gw.yaml"))
	c.waitReady(c.eks, "127.0.0.1:9092")
	time.Sleep(7 * time.Second) // a handshake is retried every 5 s
	imp := gatewayStatus(t, c.eks, "127.0.0.1:9092")
	if len(imp.Peers) != 1 || !imp.Peers[0].LastHandshake.IsZero() || imp.Peers[0].RxBytes != 0 {
		t.Errorf("a gateway with eks's retired key got an answer from aks: %+v", imp.Peers)
	}
	aksAfter := gatewayStatus(t, c.aks, c.aksGWAdmin)
	t.Logf("impostor with eks's old key: no handshake in 7 s; aks counts %d handshakes refused", aksAfter.WireGuard.HandshakeRefused)
}

// gatewayStatus reads a gateway's /status inside ns.
func gatewayStatus(t *testing.T, ns, admin string) tunnel.Status {
	t.Helper()
	st, err := readStatus(ns, admin)
	if err != nil {
		t.Fatalf("status of %s in %s: %v", admin, ns, err)
	}
	return st
}

// readStatus reads a gateway's /status inside ns.
func readStatus(ns, admin string) (tunnel.Status, error) {
	hc := &http.Client{Timeout: 3 * time.Second, Transport: &http.Transport{DialContext: dialIn(ns)}}
	resp, err := hc.Get("http://" + admin + "/status")
	if err != nil {
		return tunnel.Status{}, err
	}
	defer resp.Body.Close()
	var st tunnel.Status
	err = json.NewDecoder(resp.Body).Decode(&st)
	return st, err
}

// longestGap is the longest time between two handled jobs within
// [from, to], counting the edges of the window.
func (h *handler) longestGap(from, to time.Time) time.Duration {
	h.mu.Lock()
	defer h.mu.Unlock()
	var ts []time.Time
	for _, t := range h.times {
		if !t.Before(from) && !t.After(to) {
			ts = append(ts, t)
		}
	}
	slices.SortFunc(ts, func(a, b time.Time) int { return a.Compare(b) })
	prev, gap := from, time.Duration(0)
	for _, t := range append(ts, to) {
		gap = max(gap, t.Sub(prev))
		prev = t
	}
	return gap
}
