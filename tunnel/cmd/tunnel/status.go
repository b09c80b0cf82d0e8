package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"golang.zx2c4.com/wireguard/wgctrl"

	"github.com/tunnel-dev/tunnel/internal/cli"
	"github.com/tunnel-dev/tunnel/keys"
	"github.com/tunnel-dev/tunnel/tunnel"
)

type statusCmd struct {
	Name  string `default:"tunnel0" help:"The gateway's interface name: its UAPI socket is /var/run/wireguard/NAME.sock."`
	Admin string `default:"http://127.0.0.1:9090" help:"The gateway's admin URL, for rules, flows and drops."`
	JSON  bool   `help:"Print the status as JSON."`
}

func (c *statusCmd) Run(ctx context.Context, env cli.Env) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	st, adminErr := fetchStatus(ctx, c.Admin)
	peers, wgErr := wgPeers(c.Name)
	if adminErr != nil && wgErr != nil {
		return fmt.Errorf("no gateway found: admin %s: %v; WireGuard device %q: %v", c.Admin, adminErr, c.Name, wgErr)
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

func fetchStatus(ctx context.Context, base string) (tunnel.Status, error) {
	var st tunnel.Status
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimRight(base, "/")+"/status", nil)
	if err != nil {
		return st, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return st, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return st, fmt.Errorf("GET /status: %s", resp.Status)
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 8<<20)).Decode(&st); err != nil {
		return st, fmt.Errorf("decoding /status: %w", err)
	}
	return st, nil
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
	listen := "no listening port (dials its peers)"
	if st.ListenPort > 0 {
		listen = fmt.Sprintf("WireGuard on udp/%d", st.ListenPort)
	}
	if adminErr == nil {
		fmt.Fprintf(w, "gateway %s  key %s  %s  addresses %v  up %s\n", st.Name, fingerprint(st.PublicKey), listen, st.Addresses, st.Uptime.Round(time.Second))
	} else {
		fmt.Fprintf(w, "gateway: admin endpoint unreachable (%v); showing WireGuard's view only\n", adminErr)
	}
	if wgErr != nil {
		fmt.Fprintf(w, "(WireGuard socket not readable: %v; peers from the admin endpoint)\n", wgErr)
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
	}
	tw.Flush()
	fmt.Fprintf(w, "\nrefused at ingress: %s\n", dropList(st.Ingress))
	fmt.Fprintf(w, "refused by WireGuard: spoofed_source=%d handshake_refused=%d\n", st.WireGuard.SpoofedSource, st.WireGuard.HandshakeRefused)
	fmt.Fprintf(w, "lost for lack of room: netstack queue %d, UDP receive buffers %d\n", st.QueueDrops, st.UDPReceiveDrops)
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
