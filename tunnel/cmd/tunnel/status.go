package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"path/filepath"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"golang.zx2c4.com/wireguard/wgctrl"

	"github.com/tunnel-dev/tunnel/internal/admin"
	"github.com/tunnel-dev/tunnel/internal/cli"
	"github.com/tunnel-dev/tunnel/keys"
	"github.com/tunnel-dev/tunnel/tunnel"
	"github.com/tunnel-dev/tunnel/tunnel/config"
)

type statusCmd struct {
	Config string `short:"c" type:"path" placeholder:"FILE" xor:"name,admin" help:"The gateway's config file: its interface name, UAPI directory and admin address come from it."`
	Name   string `placeholder:"NAME" xor:"name" help:"The gateway's interface name: its UAPI socket is /var/run/wireguard/NAME.sock, and its admin endpoint is found from the process holding it (default: the only gateway running here)."`
	Admin  string `placeholder:"URL" xor:"admin" help:"The gateway's admin URL, for rules, flows and drops (default: found from the gateway's process, else http://127.0.0.1:9090)."`
	JSON   bool   `help:"Print the status as JSON."`
}

// statusTarget is the gateway status reads: its admin endpoint ("" if it
// has none) and its WireGuard device.
type statusTarget struct {
	admin   string
	name    string // "" until the admin endpoint reports it
	uapiDir string
	// note says how the admin endpoint was found, for an error.
	note string
}

// target works out the gateway from at most one flag.
func (c *statusCmd) target(ctx context.Context) (statusTarget, error) {
	if c.Config == "" {
		return findGateway(ctx, config.DefaultUAPIDir, c.Name, c.Admin)
	}
	cfg, err := config.LoadOffline(c.Config)
	if err != nil {
		return statusTarget{}, cli.Usage(fmt.Errorf("--config: %w", err))
	}
	t := statusTarget{name: cfg.Interface.Name, uapiDir: cfg.Interface.UAPIDir, note: "admin.listen in " + c.Config}
	if cfg.Admin.Listen != config.Disabled {
		t.admin = admin.URL(cfg.Admin.Listen)
	}
	return t, nil
}

// findGateway works out the gateway from its name, its admin URL, both or
// neither. Without a name it is the only gateway whose UAPI socket in dir
// answers; without an admin URL, the one the gateway's process listens on,
// else the default.
func findGateway(ctx context.Context, dir, name, adminURL string) (statusTarget, error) {
	t := statusTarget{name: name, uapiDir: dir}
	if adminURL != "" {
		t.admin, t.note = admin.URL(adminURL), "--admin"
		return t, nil
	}
	if t.name == "" {
		running, err := runningGateways(dir)
		if err != nil {
			return t, err
		}
		switch len(running) {
		case 0:
			t.admin, t.note = admin.URL(config.DefaultAdminListen), "the default admin address; no gateway's UAPI socket answers in "+dir
			return t, nil
		case 1:
			t.name = running[0]
		default:
			return t, cli.Usage(fmt.Errorf("%d gateways run here (UAPI sockets in %s): %s; pick one with --name NAME or --config FILE", len(running), dir, strings.Join(running, ", ")))
		}
	}
	sock := filepath.Join(dir, t.name+".sock")
	found, err := adminOf(ctx, sock, t.name)
	if err != nil {
		t.admin, t.note = admin.URL(config.DefaultAdminListen), fmt.Sprintf("the default admin address; none found from %s: %v", sock, err)
		return t, nil
	}
	t.admin, t.note = found, "found from the process holding "+sock
	return t, nil
}

func (c *statusCmd) Run(ctx context.Context, env cli.Env) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	t, err := c.target(ctx)
	if err != nil {
		return err
	}
	var st tunnel.Status
	adminErr := errors.New("admin endpoint disabled (admin.listen: -)")
	if t.admin != "" {
		adminErr = admin.Get(ctx, t.admin, "/status", &st)
	}
	if adminErr == nil {
		switch {
		case t.name == "":
			t.name = st.Name
		case st.Name != t.name:
			return cli.Usage(fmt.Errorf("the admin endpoint %s (%s) is gateway %q, not %q: pass the --admin of %q, or --config with its config file", t.admin, t.note, st.Name, t.name, t.name))
		}
	}
	if t.name == "" {
		t.name = "tunnel0"
	}
	var peers []tunnel.PeerStatus
	wgErr := fmt.Errorf("its UAPI socket is in %s, and wgctrl reads only %s", t.uapiDir, config.DefaultUAPIDir)
	if t.uapiDir == config.DefaultUAPIDir {
		peers, wgErr = wgPeers(t.name)
	}
	if adminErr != nil && wgErr != nil {
		return fmt.Errorf("no gateway found: admin %s (%s): %v; WireGuard device %q: %v (point at it with --config FILE, --admin URL or --name NAME)", orDash(t.admin), t.note, adminErr, t.name, wgErr)
	}
	if wgErr == nil {
		// WireGuard's own view of the peers; names come from the gateway.
		names := map[string]string{}
		for _, p := range st.Peers {
			names[p.PublicKey] = p.Name
		}
		for i := range peers {
			peers[i].Name = names[peers[i].PublicKey]
		}
		st.Peers = peers
	}
	if c.JSON {
		enc := json.NewEncoder(env.Stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(st)
	}
	printStatus(env.Stdout, st, adminErr, wgErr)
	return nil
}

// wgPeers reads the device through its UAPI socket with wgctrl, as `wg
// show` does.
func wgPeers(name string) ([]tunnel.PeerStatus, error) {
	client, err := wgctrl.New()
	if err != nil {
		return nil, err
	}
	defer client.Close()
	d, err := client.Device(name)
	if err != nil {
		return nil, err
	}
	var out []tunnel.PeerStatus
	for _, p := range d.Peers {
		ps := tunnel.PeerStatus{
			PublicKey:     p.PublicKey.String(),
			LastHandshake: p.LastHandshakeTime,
			RxBytes:       uint64(p.ReceiveBytes),
			TxBytes:       uint64(p.TransmitBytes),
		}
		if p.Endpoint != nil {
			ps.Endpoint = p.Endpoint.String()
		}
		for _, a := range p.AllowedIPs {
			if pfx, err := netipPrefix(a.String()); err == nil {
				ps.AllowedIPs = append(ps.AllowedIPs, pfx)
			}
		}
		out = append(out, ps)
	}
	return out, nil
}

func printStatus(w io.Writer, st tunnel.Status, adminErr, wgErr error) {
	fmt.Fprintln(w, header(st, adminErr))
	if wgErr != nil {
		fmt.Fprintf(w, "(WireGuard's UAPI socket not readable: %v; peers from the admin endpoint)\n", wgErr)
	}
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "PEER\tKEY\tENDPOINT\tHANDSHAKE\tRX\tTX")
	for _, p := range st.Peers {
		hs := "never"
		if !p.LastHandshake.IsZero() {
			hs = time.Since(p.LastHandshake).Round(time.Second).String() + " ago"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", orDash(p.Name), fingerprint(p.PublicKey), orDash(p.Endpoint), hs, bytesIEC(p.RxBytes), bytesIEC(p.TxBytes))
	}
	tw.Flush()
	if adminErr != nil {
		return
	}
	fmt.Fprintln(w)
	tw = tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "RULE\tKIND\tFROM\tTO\tACTIVE\tFLOWS\tUP\tDOWN\tDROPS")
	for _, r := range st.Rules {
		drops := dropList(r.Drops)
		if r.Denied > 0 {
			drops = strings.TrimPrefix(drops+fmt.Sprintf(" denied_peer=%d", r.Denied), "- ")
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%d\t%s\t%s\t%s\n", r.Name, r.Kind, r.From, r.To, r.Active, r.Flows, bytesIEC(r.BytesUp), bytesIEC(r.BytesDown), drops)
		if r.Error != "" {
			fmt.Fprintf(tw, "\t\t\t\t\t\t\t\terror: %s\n", r.Error)
		}
		if len(r.Upstreams) > 0 {
			fmt.Fprintf(tw, "\tupstreams: %s\n", upstreamLine(r))
		}
	}
	tw.Flush()
	fmt.Fprintf(w, "\nrefused at ingress: %s\n", dropList(st.Ingress))
	fmt.Fprintf(w, "refused by WireGuard: spoofed_source=%d handshake_refused=%d\n", st.WireGuard.SpoofedSource, st.WireGuard.HandshakeRefused)
	fmt.Fprintf(w, "lost for lack of room: netstack queue %d, UDP receive buffers %d\n", st.QueueDrops, st.UDPReceiveDrops)
}

// header is status's first line: which gateway, and its WireGuard socket.
func header(st tunnel.Status, adminErr error) string {
	if adminErr != nil {
		return fmt.Sprintf("gateway: admin endpoint unreachable (%v); showing WireGuard's view only", adminErr)
	}
	return fmt.Sprintf("gateway %s  key %s  %s  addresses %v  up %s", st.Name, fingerprint(st.PublicKey), socketLine(st), st.Addresses, st.Uptime.Round(time.Second))
}

// socketLine says what WireGuard's UDP socket does. A dial-only gateway's
// socket is connected to its peer: its port is only the source port the
// kernel picked, not one anything may send to.
func socketLine(st tunnel.Status) string {
	if !st.DialOnly {
		return fmt.Sprintf("WireGuard listening on udp/%d", st.ListenPort)
	}
	for _, p := range st.Peers {
		if p.Endpoint != "" {
			return fmt.Sprintf("WireGuard socket connected to %s from udp/%d, listening on no port", p.Endpoint, st.ListenPort)
		}
	}
	return "WireGuard dials its peer (no endpoint yet), listening on no port"
}

func dropList(m map[string]uint64) string {
	var parts []string
	for k, v := range m {
		if v > 0 {
			parts = append(parts, fmt.Sprintf("%s=%d", k, v))
		}
	}
	if len(parts) == 0 {
		return "-"
	}
	sort.Strings(parts)
	return strings.Join(parts, " ")
}

func fingerprint(b64 string) string {
	k, err := keys.ParsePublicKey(b64)
	if err != nil {
		return orDash(b64)
	}
	return k.Fingerprint()
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func bytesIEC(n uint64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := uint64(unit), 0
	for m := n / unit; m >= unit && exp < 4; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTP"[exp])
}

var errNotPrefix = errors.New("not a prefix")

func netipPrefix(s string) (netip.Prefix, error) {
	p, err := netip.ParsePrefix(s)
	if err != nil {
		return p, errNotPrefix
	}
	return p, nil
}

// upstreamLine says, for a rule with several upstreams, how each is (in
// order), which one new flows use, and every failover so far:
// "eks-a 10.99.0.1:7443 down: keepalive_missed, silent 3.1s; → eks-b
// 10.99.0.11:7443 (in use); failovers: eks-a/…→eks-b/… keepalive_missed ×1".
func upstreamLine(r tunnel.RuleStatus) string {
	var parts []string
	for _, u := range r.Upstreams {
		s := u.Peer + " " + u.To.String()
		switch {
		case u.InUse && u.Healthy:
			s = "→ " + s + " (in use)"
		case u.InUse:
			s = "→ " + s + " (in use, down: " + u.Reason + ")"
		case u.Healthy:
			s += " up"
		default:
			s += " down: " + u.Reason
		}
		if !u.Healthy && u.SilentFor > 0 {
			s += ", silent " + u.SilentFor.Round(100*time.Millisecond).String()
		}
		parts = append(parts, s)
	}
	line := strings.Join(parts, "; ")
	var fs []string
	for _, f := range r.Failovers {
		fs = append(fs, fmt.Sprintf("%s→%s %s ×%d", f.From, f.To, f.Reason, f.Count))
	}
	if len(fs) > 0 {
		line += "; failovers: " + strings.Join(fs, ", ")
	}
	return line
}
