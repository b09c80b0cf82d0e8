package config

import (
	"fmt"
	"io"
	"net/netip"
	"strings"

	"github.com/tunnel-dev/tunnel/keys"
)

// Describe writes, in plain words, exactly what the gateway carries: who may
// reach which port, what it forwards where, and that nothing else answers.
// self is the gateway's own public key when it is known.
func Describe(w io.Writer, c *Config, self *keys.PublicKey) {
	addrs := addrList(c.Interface.Addresses)
	fmt.Fprintf(w, "gateway %s", c.Interface.Name)
	if self != nil {
		fmt.Fprintf(w, " (key %s)", self.Fingerprint())
	}
	fmt.Fprintf(w, ": tunnel address %s, MTU %d, ", addrs, c.Interface.MTU)
	if c.Interface.ListenPort > 0 {
		fmt.Fprintf(w, "WireGuard listens on udp/%d\n", c.Interface.ListenPort)
	} else {
		fmt.Fprintf(w, "no listening port (it dials its peers)\n")
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "peers:")
	for _, p := range c.Peers {
		fmt.Fprintf(w, "  %s (key %s): tunnel address %s", p.Name, keyOf(p), prefixList(p.AllowedIPs))
		if p.NextKey != nil {
			fmt.Fprintf(w, "; rotating: successor key %s staged, takes over on its first handshake", p.NextKey.Fingerprint())
		}
		if p.Endpoint != "" {
			fmt.Fprintf(w, "; dialled at %s", p.Endpoint)
		} else {
			fmt.Fprintf(w, "; dials us")
		}
		if p.PersistentKeepalive > 0 {
			fmt.Fprintf(w, ", keepalive every %s", p.PersistentKeepalive)
		}
		if p.PresharedKeyFile != "" {
			fmt.Fprintf(w, ", with a preshared key")
		}
		fmt.Fprintln(w)
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "exposed through the tunnel:")
	if len(c.Expose) == 0 {
		fmt.Fprintln(w, "  nothing")
	}
	for _, e := range c.Expose {
		var who []string
		for _, name := range e.Peers {
			p := c.PeerByName(name)
			who = append(who, fmt.Sprintf("peer %s (key %s)", p.Name, keyOf(*p)))
		}
		fmt.Fprintf(w, "  %s may reach %s/%d → %s  [rule %s]\n", strings.Join(who, " and "), e.Protocol, e.Port, e.Target, e.Name)
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "forwarded into the tunnel:")
	if len(c.Forward) == 0 {
		fmt.Fprintln(w, "  nothing")
	}
	for _, f := range c.Forward {
		if len(f.Upstreams) > 1 {
			fmt.Fprintf(w, "  local %s %s → %s  [rule %s]\n", f.Protocol, f.Listen, upstreamList(f.Upstreams), f.Name)
			continue
		}
		p := c.PeerByName(f.Peer)
		key := ""
		if p != nil {
			key = " (key " + keyOf(*p) + ")"
		}
		fmt.Fprintf(w, "  local %s/%s → peer %s%s at %s  [rule %s]\n", f.Protocol, f.Listen, f.Peer, key, f.To, f.Name)
	}
	fmt.Fprintln(w)
	fmt.Fprintf(w, "nothing else answers on %s; nothing is routed to any other address.\n", addrs)
	if c.Admin.Listen != Disabled {
		fmt.Fprintf(w, "admin (never through the tunnel): http://%s/metrics, /healthz, /readyz, /status\n", c.Admin.Listen)
	}
}

func addrList(as []netip.Addr) string {
	s := make([]string, len(as))
	for i, a := range as {
		s[i] = a.String()
	}
	return strings.Join(s, ", ")
}

// keyOf names a peer's key: its fingerprint, or the file it comes from
// when that was not read.
func keyOf(p Peer) string {
	if p.Key.IsZero() && p.PublicKeyFile != "" {
		return "from " + p.PublicKeyFile
	}
	return p.Key.Fingerprint()
}

// upstreamList is a rule's upstreams in order: "eks-a 10.99.0.1:7443, then
// eks-b 10.99.0.11:7443".
func upstreamList(us []Upstream) string {
	s := make([]string, len(us))
	for i, u := range us {
		s[i] = u.String()
	}
	return strings.Join(s, ", then ")
}
