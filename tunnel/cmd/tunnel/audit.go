package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/tunnel-dev/tunnel/internal/admin"
	"github.com/tunnel-dev/tunnel/internal/cli"
	"github.com/tunnel-dev/tunnel/tunnel"
	"github.com/tunnel-dev/tunnel/tunnel/audit"
	"github.com/tunnel-dev/tunnel/tunnel/config"
)

type auditCmd struct {
	Config      string        `short:"c" type:"path" placeholder:"FILE" xor:"admin" help:"The gateway's config file: the admin address comes from it."`
	Admin       string        `placeholder:"URL" xor:"admin" help:"The gateway's admin URL (default: http://127.0.0.1:9090)."`
	Peer        string        `placeholder:"NAME" help:"The peer to probe (default: the gateway's only peer)."`
	Target      string        `placeholder:"IP" help:"The peer's tunnel address (default: where the forward rules reach it)."`
	TCPPorts    string        `placeholder:"LIST" default:"1-65535" help:"TCP ports to probe on the target, such as 1-1024,8000."`
	UDP         string        `placeholder:"LIST" help:"UDP ports to probe besides the forward rules' and a common list (53, 123, 161, 443, 500, 4500, 4789, 5353, 6081, 8472, 51820)."`
	Address     []netip.Addr  `placeholder:"IP" help:"Other addresses to probe on common and expected ports; they must lie in the peer's allowed IPs (the edges of its allowed ranges are always probed)."`
	Expect      []string      `placeholder:"PROTO/IP:PORT" help:"An answer allowed besides the forward rules' targets, such as tcp/10.99.0.1:9000; repeatable."`
	Timeout     time.Duration `default:"1s" help:"How long each probe waits for an answer; silence past it counts as closed."`
	Concurrency int           `default:"256" help:"Probes in flight at once (at most 4096)."`
	JSON        bool          `help:"Print the report as JSON."`
}

func (c *auditCmd) Run(ctx context.Context, env cli.Env) error {
	req, err := c.request()
	if err != nil {
		return cli.Usage(err)
	}
	base := c.Admin
	if c.Config != "" {
		cfg, err := config.LoadOffline(c.Config)
		if err != nil {
			return cli.Usage(fmt.Errorf("--config: %w", err))
		}
		if cfg.Admin.Listen == config.Disabled {
			return cli.Usage(fmt.Errorf("--config: %s disables the admin endpoint, which the audit runs through", c.Config))
		}
		base = admin.URL(cfg.Admin.Listen)
	}
	if base == "" {
		base = admin.URL(config.DefaultAdminListen)
	}
	rep, err := postAudit(ctx, base, req)
	if err != nil {
		return err
	}
	if c.JSON {
		enc := json.NewEncoder(env.Stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(rep); err != nil {
			return err
		}
	} else {
		printAudit(env.Stdout, rep)
	}
	if len(rep.Unexpected) > 0 {
		names := make([]string, len(rep.Unexpected))
		for i, f := range rep.Unexpected {
			names[i] = f.String()
		}
		return fmt.Errorf("audit failed: peer %s answers beyond this gateway's rules: %s", rep.Peer, strings.Join(names, ", "))
	}
	if rep.Failed > 0 {
		return fmt.Errorf("audit incomplete: %d probes failed (first: %s)", rep.Failed, rep.FirstFail)
	}
	return nil
}

func (c *auditCmd) request() (tunnel.AuditRequest, error) {
	req := tunnel.AuditRequest{Peer: c.Peer, Others: c.Address, Timeout: c.Timeout.String(), Concurrency: c.Concurrency}
	if c.Timeout <= 0 || c.Timeout > time.Minute {
		return req, fmt.Errorf("--timeout %s: want between 1ms and 1m", c.Timeout)
	}
	if c.Concurrency < 1 || c.Concurrency > audit.MaxConcurrency {
		return req, fmt.Errorf("--concurrency %d: want 1 to %d", c.Concurrency, audit.MaxConcurrency)
	}
	if c.Target != "" {
		a, err := netip.ParseAddr(c.Target)
		if err != nil {
			return req, fmt.Errorf("--target %q: not an IP address", c.Target)
		}
		req.Target = a.Unmap()
	}
	var err error
	if req.TCPPorts, err = audit.ParsePorts(c.TCPPorts); err != nil {
		return req, fmt.Errorf("--tcp-ports: %w", err)
	}
	if len(req.TCPPorts) == 65535 {
		req.TCPPorts = nil // every port: the gateway plans them itself
	}
	if c.UDP != "" {
		if req.UDPPorts, err = audit.ParsePorts(c.UDP); err != nil {
			return req, fmt.Errorf("--udp: %w", err)
		}
	}
	for _, s := range c.Expect {
		e, err := audit.ParseExpect(s)
		if err != nil {
			return req, fmt.Errorf("--expect: %w", err)
		}
		req.Expect = append(req.Expect, e)
	}
	return req, nil
}

// postAudit runs the audit on the gateway at base.
func postAudit(ctx context.Context, base string, req tunnel.AuditRequest) (tunnel.AuditReport, error) {
	var rep tunnel.AuditReport
	body, err := json.Marshal(req)
	if err != nil {
		return rep, err
	}
	url := strings.TrimRight(base, "/") + "/audit"
	hr, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return rep, fmt.Errorf("--admin %q: %w", base, err)
	}
	hr.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(hr)
	if err != nil {
		return rep, fmt.Errorf("reaching the gateway's admin endpoint (--admin, $TUNNEL_AUDIT_ADMIN): %w", err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return rep, fmt.Errorf("reading the audit from %s: %w", url, err)
	}
	if resp.StatusCode == http.StatusNotFound {
		return rep, fmt.Errorf("POST %s: 404: this gateway is older than tunnel audit", url)
	}
	if !strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
		return rep, fmt.Errorf("POST %s: %s: %s", url, resp.Status, strings.TrimSpace(string(b)))
	}
	if err := json.Unmarshal(b, &rep); err != nil {
		return rep, fmt.Errorf("decoding the audit from %s: %w", url, err)
	}
	if resp.StatusCode != http.StatusOK {
		return rep, errors.New("the audit stopped early on the gateway; see its log")
	}
	return rep, nil
}

func printAudit(w io.Writer, r tunnel.AuditReport) {
	fmt.Fprintf(w, "Peer %s at %s: %d TCP and %d UDP probes in %s\n", r.Peer, r.Target, r.TCPProbes, r.UDPProbes, r.Duration.Round(time.Millisecond))
	if len(r.Others) > 0 {
		fmt.Fprintf(w, "Also probed: %v\n", r.Others)
	}
	for _, s := range r.Skipped {
		fmt.Fprintf(w, "Not probed: %s\n", s)
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ANSWERED\tRESULT\tVERDICT")
	unexpected := map[audit.Finding]bool{}
	for _, f := range r.Unexpected {
		unexpected[f] = true
	}
	for _, f := range r.Answered {
		verdict := "expected (a forward rule or --expect)"
		if unexpected[f] {
			verdict = "UNEXPECTED"
		}
		fmt.Fprintf(tw, "%s/%s\t%s\t%s\n", f.Protocol, f.Addr, f.Result, verdict)
	}
	if len(r.Answered) == 0 {
		fmt.Fprintln(tw, "(nothing)\t\t")
	}
	_ = tw.Flush()
	for _, e := range r.Silent {
		fmt.Fprintf(w, "Expected but silent: %s (the rule is broken or its service is down)\n", e)
	}
	if len(r.Unexpected) == 0 {
		fmt.Fprintf(w, "OK: nothing answers beyond %d expected\n", len(r.Expected))
	}
}
