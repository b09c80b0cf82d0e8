package tunnel_test

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/tunnel-dev/tunnel/internal/testutil"
	"github.com/tunnel-dev/tunnel/tunnel"
	"github.com/tunnel-dev/tunnel/tunnel/audit"
)

// An audit from aks over the real tunnel finds exactly what eks exposes
// to it: tcp/8000 open and udp/7000 echoing, both targets of aks's forward
// rules, and nothing else of all 65,535 TCP ports. A port eks opens
// beyond its rules (an embedding program's Listen) is named as unexpected.
func TestAuditFindsOnlyTheExposedPorts(t *testing.T) {
	p := startPair(t, pairOpts{})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	req := tunnel.AuditRequest{Peer: "eks", Timeout: "300ms", Concurrency: 1024}
	if testing.Short() || raceEnabled {
		// The same sweep over fewer ports: the well-known ones and those
		// around the rules'.
		req.TCPPorts = append(portRange(1, 1024), portRange(7900, 9100)...)
		req.Timeout, req.Concurrency = "1s", 256
	}
	rep, err := p.aks.Audit(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%d TCP and %d UDP probes in %s", rep.TCPProbes, rep.UDPProbes, rep.Duration.Round(time.Millisecond))
	want := []audit.Finding{
		{Protocol: "tcp", Addr: netip.MustParseAddrPort("10.99.0.1:8000"), Result: audit.Open},
		{Protocol: "udp", Addr: netip.MustParseAddrPort("10.99.0.1:7000"), Result: audit.Replied},
	}
	if !equalFindings(rep.Answered, want) || len(rep.Unexpected) != 0 || rep.Failed != 0 {
		t.Fatalf("answered %v, unexpected %v, failed %d (%s); want answered %v and nothing unexpected", rep.Answered, rep.Unexpected, rep.Failed, rep.FirstFail, want)
	}
	// aks forwards to tcp/8001 too, which eks does not expose: expected,
	// and reported silent.
	if len(rep.Silent) != 1 || rep.Silent[0].String() != "tcp/10.99.0.1:8001" {
		t.Fatalf("silent %v, want tcp/10.99.0.1:8001", rep.Silent)
	}
	if len(req.TCPPorts) == 0 && rep.TCPProbes != 65535 {
		t.Fatalf("%d TCP probes, want every port", rep.TCPProbes)
	}

	ln, err := p.eks.Listen("tcp", ":9000")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	req.TCPPorts = portRange(7900, 9100) // the sweep above covered every port
	rep, err = p.aks.Audit(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	wantExtra := []audit.Finding{{Protocol: "tcp", Addr: netip.MustParseAddrPort("10.99.0.1:9000"), Result: audit.Open}}
	if !equalFindings(rep.Unexpected, wantExtra) {
		t.Fatalf("unexpected %v, want %v", rep.Unexpected, wantExtra)
	}
}

// POST /audit is the only way in: other methods, a form post from a
// browser page, and unknown fields are refused before anything is probed.
func TestAuditHandlerRefusesBrowsersAndNonPOST(t *testing.T) {
	p := startPair(t, pairOpts{})
	url := p.aks.AdminURL() + "/audit"
	tests := []struct {
		name, method, ctype, origin, body string
		status                            int
	}{
		{"GET", http.MethodGet, "", "", "", http.StatusMethodNotAllowed},
		{"form post", http.MethodPost, "text/plain", "", `{"peer":"eks"}`, http.StatusUnsupportedMediaType},
		{"from a page", http.MethodPost, "application/json", "http://example.invalid", `{"peer":"eks"}`, http.StatusForbidden},
		{"unknown field", http.MethodPost, "application/json", "", `{"peer":"eks","port":1}`, http.StatusBadRequest},
		{"unknown peer", http.MethodPost, "application/json", "", `{"peer":"nobody"}`, http.StatusBadRequest},
		{"address outside the peer's range", http.MethodPost, "application/json", "", `{"peer":"eks","target":"10.0.0.1"}`, http.StatusBadRequest},
		{"ok", http.MethodPost, "application/json", "", `{"peer":"eks","tcp_ports":[8000,8001],"timeout":"300ms"}`, http.StatusOK},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := http.NewRequest(tt.method, url, strings.NewReader(tt.body))
			if err != nil {
				t.Fatal(err)
			}
			if tt.ctype != "" {
				r.Header.Set("Content-Type", tt.ctype)
			}
			if tt.origin != "" {
				r.Header.Set("Origin", tt.origin)
			}
			resp, err := http.DefaultClient.Do(r)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			var b bytes.Buffer
			_, _ = b.ReadFrom(resp.Body)
			if resp.StatusCode != tt.status {
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, tt.status, b.String())
			}
			if tt.status == http.StatusOK {
				var rep tunnel.AuditReport
				if err := json.Unmarshal(b.Bytes(), &rep); err != nil {
					t.Fatal(err)
				}
				if len(rep.Answered) != 2 || len(rep.Unexpected) != 0 { // tcp/8000 and udp/7000
					t.Fatalf("report %+v", rep)
				}
			}
		})
	}
}

func portRange(from, to uint16) []uint16 {
	var ps []uint16
	for p := from; p <= to; p++ {
		ps = append(ps, p)
	}
	return ps
}

func equalFindings(a, b []audit.Finding) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// With no session to the peer every probe would be lost: the audit
// refuses to report that silence as a result.
func TestAuditRefusesWithoutASession(t *testing.T) {
	gw := startGateway(t, listeningSide(t, freeUDPPort(t), testutil.PrivateKey(t).Public()), testutil.PrivateKey(t))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	_, err := gw.Audit(ctx, tunnel.AuditRequest{TCPPorts: []uint16{8000}})
	if err == nil || !strings.Contains(err.Error(), `no WireGuard session with peer "eks"`) {
		t.Fatalf("audit with no peer: %v, want a refusal naming the missing session", err)
	}
}
