package bench

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	"github.com/tunnel-dev/tunnel/internal/procstat"
	"github.com/tunnel-dev/tunnel/keys"
)

// Footprint is what one gateway process costs: how fast it starts, how
// much memory it holds idle, and how much each idle flow adds.
type Footprint struct {
	// StartToReady is from exec to /readyz answering 200.
	StartToReady time.Duration `json:"start_to_ready_ns"`
	// IdleRSS is the resident set of a started, idle gateway.
	IdleRSS uint64 `json:"idle_rss_bytes"`
	// Flows is how many idle flows were opened for the per-flow figures.
	Flows int `json:"flows"`
	// PerUDPFlow and PerTCPFlow are the resident set an idle flow adds to
	// a gateway (the two gateways' growth, halved).
	PerUDPFlow int64 `json:"per_udp_flow_bytes"`
	PerTCPFlow int64 `json:"per_tcp_flow_bytes"`
}

// MeasureStartup runs a gateway (gateway: `tunnel gateway` or
// `tunnel-gateway`, see Commands) with a minimal configuration (one peer,
// one exposed port, admin on loopback) and times it to ready.
func MeasureStartup(ctx context.Context, gateway []string) (time.Duration, uint64, error) {
	dir, err := os.MkdirTemp("", "tunnel-bench-start-")
	if err != nil {
		return 0, 0, err
	}
	defer os.RemoveAll(dir)
	if _, err := keys.WriteKeyPair(dir, false); err != nil {
		return 0, 0, err
	}
	peer, err := keys.GeneratePrivateKey()
	if err != nil {
		return 0, 0, err
	}
	admin, err := freeTCP()
	if err != nil {
		return 0, 0, err
	}
	cfg := filepath.Join(dir, "gateway.yaml")
	body := fmt.Sprintf(`interface: {name: benchstart, privateKeyFile: %s, addresses: [10.99.0.1], uapiDir: "-"}
peers: [{name: aks, publicKey: %s, allowedIPs: [10.99.0.2/32]}]
expose: [{name: relay, protocol: udp, port: 7000, target: "127.0.0.1:7000", peers: [aks]}]
admin: {listen: %q}
`, filepath.Join(dir, keys.PrivateKeyFile), peer.Public(), admin)
	if err := os.WriteFile(cfg, []byte(body), 0o600); err != nil {
		return 0, 0, err
	}
	args := append(append([]string(nil), gateway[1:]...), "--config", cfg, "--reload-every", "0")
	cmd := exec.CommandContext(ctx, gateway[0], args...)
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return 0, 0, err
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	client := &http.Client{Timeout: 100 * time.Millisecond}
	url := "http://" + admin + "/readyz"
	for {
		resp, err := client.Get(url)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		if time.Since(start) > 10*time.Second {
			return 0, 0, fmt.Errorf("gateway not ready after 10s")
		}
		time.Sleep(time.Millisecond)
	}
	ready := time.Since(start)
	time.Sleep(200 * time.Millisecond) // settle, as an idle pod would
	rss, err := currentRSS(cmd.Process.Pid)
	return ready, rss, err
}

func freeTCP() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

// currentRSS is a process's resident set (VmRSS), in bytes.
func currentRSS(pid int) (uint64, error) { return procstat.RSS(pid) }

// measureFlows opens n idle UDP flows and then n idle TCP connections
// through a tunnel of two node processes and reports the resident set each
// adds to a gateway.
func measureFlows(ctx context.Context, o Options, tg *targets, n int) (perUDP, perTCP int64, err error) {
	p, err := startPath(ctx, o, Tunnel, tg.tcp.Addr().String(), tg.udp.LocalAddr().String())
	if err != nil {
		return 0, 0, err
	}
	defer p.Close()
	pids := []int{p.eks.ready.PID, p.aks.ready.PID}
	rss := func() int64 {
		var total int64
		for _, pid := range pids {
			r, _ := currentRSS(pid)
			total += int64(r)
		}
		return total
	}
	// Warm up one flow of each kind, so the figure is per flow, not the
	// first flow's setup.
	if _, _, err := udpRTT(ctx, p.aks.ready.UDPForward, 10); err != nil {
		return 0, 0, err
	}
	settle := func() { time.Sleep(300 * time.Millisecond) }
	settle()
	before := rss()
	var conns []net.Conn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	buf := make([]byte, 64)
	for range n {
		c, err := net.Dial("udp", p.aks.ready.UDPForward)
		if err != nil {
			return 0, 0, err
		}
		conns = append(conns, c)
		_ = c.SetDeadline(time.Now().Add(2 * time.Second))
		if _, err := c.Write(buf); err != nil {
			return 0, 0, err
		}
		if _, err := c.Read(buf); err != nil {
			return 0, 0, fmt.Errorf("idle UDP flow %d: %w", len(conns), err)
		}
	}
	settle()
	perUDP = (rss() - before) / int64(2*n)
	before = rss()
	for range n {
		c, err := net.Dial("tcp", p.aks.ready.TCPForward)
		if err != nil {
			return 0, 0, err
		}
		conns = append(conns, c)
		if _, err := c.Write([]byte("x")); err != nil { // the far side dials on the first byte
			return 0, 0, err
		}
	}
	settle()
	perTCP = (rss() - before) / int64(2*n)
	return perUDP, perTCP, nil
}
