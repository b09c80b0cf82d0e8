package config

import (
	"fmt"
	"net/netip"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/tunnel-dev/tunnel/internal/yamlcheck"
	"github.com/tunnel-dev/tunnel/keys"
)

// MaxFileSize bounds a configuration file; anything larger is a mistake.
const MaxFileSize = 1 << 20

// FieldError is one problem with one field (such as "peers[0].publicKey").
type FieldError = yamlcheck.FieldError

// Errors is every problem found in a file.
type Errors = yamlcheck.Errors

// Load reads and parses a configuration file, and the peer key files it
// names.
func Load(path string) (*Config, error) {
	return yamlcheck.LoadFile(path, MaxFileSize, Parse, ResolveFiles)
}

// LoadOffline reads and parses a configuration file alone, without the
// key files it names (peers given by publicKeyFile keep a zero Key).
func LoadOffline(path string) (*Config, error) {
	return yamlcheck.LoadFile(path, MaxFileSize, Parse, nil)
}

// LoadTemplate is LoadOffline that lets values marked REPLACE through:
// the check of a shipped manifest before it is edited (`tunnel config
// check --offline --allow-placeholders`).
func LoadTemplate(path string) (*Config, error) {
	return yamlcheck.LoadFile(path, MaxFileSize, ParseTemplate, nil)
}

// Parse parses and validates a configuration. The error is an Errors
// listing every problem, each naming its field and line; a value still
// marked REPLACE is one.
func Parse(data []byte) (*Config, error) { return yamlcheck.Parse(data, fromRaw) }

// ParseTemplate is Parse that lets values marked REPLACE through.
func ParseTemplate(data []byte) (*Config, error) { return yamlcheck.ParseTemplate(data, fromRaw) }

func fromRaw(yp *yamlcheck.Parser, r *rawConfig) *Config { return (&parser{yp}).convert(r) }

// parser converts a rawConfig, collecting every problem.
type parser struct{ *yamlcheck.Parser }

var ifaceNameRE = regexp.MustCompile(`^[A-Za-z0-9_=+.-]{1,15}$`)

func (p *parser) convert(r *rawConfig) *Config {
	c := &Config{}
	p.iface(&r.Interface, &c.Interface)
	p.peers(r.Peers, c)
	p.limits(&r.Limits, &c.Limits)
	c.Admin.Listen = DefaultAdminListen
	if s := strings.TrimSpace(r.Admin.Listen); s != "" {
		if s != Disabled {
			p.HostPort("admin.listen", s, true)
		}
		c.Admin.Listen = s
	}
	switch strings.TrimSpace(r.Admin.Pprof) {
	case "", "false":
	case "true":
		c.Admin.Pprof = true
	default:
		p.Fail("admin.pprof", "%q is not true or false", r.Admin.Pprof)
	}
	p.exposes(r.Expose, c)
	p.forwards(r.Forward, c)
	return c
}

func (p *parser) iface(r *rawInterface, i *Interface) {
	i.Name = DefaultName
	if r.Name != "" {
		if !ifaceNameRE.MatchString(r.Name) {
			p.Fail("interface.name", "%q is not a valid interface name (1-15 of A-Z a-z 0-9 _ = + . -)", r.Name)
		}
		i.Name = r.Name
	}
	if r.PrivateKeyFile == "" {
		p.Fail("interface.privateKeyFile", "required: the file holding this gateway's private key (make one with `tunnel keys generate`)")
	}
	i.PrivateKeyFile = r.PrivateKeyFile
	if r.ListenPort != "" {
		i.ListenPort = p.port("interface.listenPort", r.ListenPort, true)
	}
	if len(r.Addresses) == 0 {
		p.Fail("interface.addresses", "required: this gateway's tunnel address, such as [10.99.0.1]")
	}
	seen := map[netip.Addr]bool{}
	for n, s := range r.Addresses {
		path := fmt.Sprintf("interface.addresses[%d]", n)
		a, err := netip.ParseAddr(strings.TrimSpace(s))
		if err != nil {
			if pfx, perr := netip.ParsePrefix(strings.TrimSpace(s)); perr == nil {
				p.Fail(path, "%q is a prefix; give the address alone (%s)", s, pfx.Addr())
			} else {
				p.Fail(path, "%q is not an IP address", s)
			}
			continue
		}
		if a.Zone() != "" || a.IsUnspecified() || a.IsMulticast() || a.IsLoopback() {
			p.Fail(path, "%s cannot be a tunnel address (unspecified, loopback, multicast or zoned)", a)
			continue
		}
		if seen[a] {
			p.Fail(path, "%s is listed twice", a)
		}
		seen[a] = true
		i.Addresses = append(i.Addresses, a.Unmap())
	}
	i.MTU = DefaultMTU
	if r.MTU != "" {
		v, err := strconv.Atoi(strings.TrimSpace(r.MTU))
		if err != nil || v < 1280 || v > 9000 {
			p.Fail("interface.mtu", "%q is not an MTU between 1280 and 9000 (default 1420: a 1500-byte path less WireGuard's 80 bytes)", r.MTU)
		} else {
			i.MTU = v
		}
	}
	i.UAPIDir = DefaultUAPIDir
	if r.UAPIDir != "" {
		i.UAPIDir = r.UAPIDir
	}
}

func (p *parser) peers(rs []rawPeer, c *Config) {
	if len(rs) == 0 {
		p.Fail("peers", "required: at least one peer (the other gateway)")
	}
	names := map[string]int{}
	pubs := map[keys.PublicKey]int{}
	type owned struct {
		pfx  netip.Prefix
		peer int
	}
	var all []owned
	for n, r := range rs {
		path := fmt.Sprintf("peers[%d]", n)
		var peer Peer
		peer.Name = r.Name
		switch {
		case r.Name == "":
			p.Fail(path+".name", "required: a name for the peer, used by rules and in logs")
		case !keys.ValidName(r.Name):
			p.Fail(path+".name", "%q is not a valid name (lowercase letters, digits and '-', up to 63)", r.Name)
		default:
			if prev, dup := names[r.Name]; dup {
				p.Fail(path+".name", "%q is already the name of peers[%d]", r.Name, prev)
			}
			names[r.Name] = n
		}
		switch {
		case r.PublicKey != "" && r.PublicKeyFile != "":
			p.Fail(path+".publicKeyFile", "give publicKey or publicKeyFile, not both")
		case r.PublicKeyFile != "":
			if r.NextPublicKey != "" {
				p.Fail(path+".nextPublicKey", "with publicKeyFile, the successor key is the file's second line")
			}
			peer.PublicKeyFile = r.PublicKeyFile
		case r.PublicKey == "":
			p.Fail(path+".publicKey", "required: the peer's base64 public key (`tunnel keys public` prints it), or publicKeyFile")
		default:
			if k, err := keys.ParsePublicKey(r.PublicKey); err != nil {
				p.Fail(path+".publicKey", "%v", err)
			} else {
				if prev, dup := pubs[k]; dup {
					p.Fail(path+".publicKey", "the same key as peers[%d]: two gateways never share a private key (each replica has its own)", prev)
				}
				pubs[k] = n
				peer.Key = k
				peer.PublicKey = k.String()
			}
			if r.NextPublicKey != "" {
				if k, err := keys.ParsePublicKey(r.NextPublicKey); err != nil {
					p.Fail(path+".nextPublicKey", "%v", err)
				} else if k == peer.Key {
					p.Fail(path+".nextPublicKey", "the same key as publicKey")
				} else {
					if prev, dup := pubs[k]; dup {
						p.Fail(path+".nextPublicKey", "the same key as peers[%d]", prev)
					}
					pubs[k] = n
					peer.NextKey = &k
					peer.NextPublicKey = k.String()
				}
			}
		}
		peer.PresharedKeyFile = r.PresharedKeyFile
		if r.Endpoint != "" {
			p.HostPort(path+".endpoint", r.Endpoint, false)
			peer.Endpoint = strings.TrimSpace(r.Endpoint)
		}
		if r.PersistentKeepalive != "" {
			d := p.duration(path+".persistentKeepalive", r.PersistentKeepalive)
			if d < 0 || d > 65535*time.Second || d%time.Second != 0 {
				p.Fail(path+".persistentKeepalive", "%q must be whole seconds between 0s and 65535s (25s is usual)", r.PersistentKeepalive)
			}
			peer.PersistentKeepalive = d
		}
		if len(r.AllowedIPs) == 0 {
			p.Fail(path+".allowedIPs", "required: the peer's tunnel address(es), such as [10.99.0.2/32]")
		}
		for m, s := range r.AllowedIPs {
			ipath := fmt.Sprintf("%s.allowedIPs[%d]", path, m)
			pfx, err := netip.ParsePrefix(strings.TrimSpace(s))
			if err != nil {
				if a, aerr := netip.ParseAddr(strings.TrimSpace(s)); aerr == nil {
					p.Fail(ipath, "%q needs a prefix length: %s/%d for one address", s, a, a.BitLen())
				} else {
					p.Fail(ipath, "%q is not a CIDR prefix: %v", s, cleanNetipErr(err))
				}
				continue
			}
			if pfx.Masked() != pfx {
				p.Fail(ipath, "%q has host bits set; did you mean %s (one address: %s/%d)?", s, pfx.Masked(), pfx.Addr(), pfx.Addr().BitLen())
				continue
			}
			if pfx.Bits() == 0 {
				p.Fail(ipath, "%q would let this peer use every source address; the tunnel routes nothing, so give the peer's own address(es)", s)
				continue
			}
			for _, o := range all {
				if o.pfx.Overlaps(pfx) {
					p.Fail(ipath, "%s overlaps %s of peers[%d]: each inner source address must belong to exactly one peer key", pfx, o.pfx, o.peer)
				}
			}
			for _, a := range c.Interface.Addresses {
				if pfx.Contains(a) {
					p.Fail(ipath, "%s contains this gateway's own address %s", pfx, a)
				}
			}
			all = append(all, owned{pfx, n})
			peer.AllowedIPs = append(peer.AllowedIPs, pfx)
		}
		c.Peers = append(c.Peers, peer)
	}
}

func (p *parser) exposes(rs []rawExpose, c *Config) {
	names := map[string]int{}
	ports := map[string]int{}
	for n, r := range rs {
		path := fmt.Sprintf("expose[%d]", n)
		e := Expose{Name: r.Name}
		p.ruleName(path, r.Name, names, n, "expose")
		e.Protocol = p.protocol(path+".protocol", r.Protocol)
		if r.Port == "" {
			p.Fail(path+".port", "required: the port on this gateway's tunnel address")
		} else {
			e.Port = uint16(p.port(path+".port", r.Port, false))
		}
		if e.Protocol != "" && e.Port != 0 {
			key := fmt.Sprintf("%s/%d", e.Protocol, e.Port)
			if prev, dup := ports[key]; dup {
				p.Fail(path+".port", "%s is already exposed by expose[%d]", key, prev)
			}
			ports[key] = n
		}
		if r.Target == "" {
			p.Fail(path+".target", "required: host:port of the service this port reaches, such as relay.relay.svc.cluster.local:7000")
		} else {
			p.HostPort(path+".target", r.Target, false)
			e.Target = strings.TrimSpace(r.Target)
		}
		if len(r.Peers) == 0 {
			p.Fail(path+".peers", "required: the peers allowed to reach this port (by name)")
		}
		for m, name := range r.Peers {
			if c.PeerByName(name) == nil {
				p.Fail(fmt.Sprintf("%s.peers[%d]", path, m), "%q is not a peer; known peers: %s", name, peerNames(c))
				continue
			}
			e.Peers = append(e.Peers, name)
		}
		c.Expose = append(c.Expose, e)
	}
}

func (p *parser) forwards(rs []rawForward, c *Config) {
	names := map[string]int{}
	listens := map[string]int{}
	for n, r := range rs {
		path := fmt.Sprintf("forward[%d]", n)
		f := Forward{Name: r.Name}
		p.ruleName(path, r.Name, names, n, "forward")
		f.Protocol = p.protocol(path+".protocol", r.Protocol)
		if r.Listen == "" {
			p.Fail(path+".listen", "required: the local address to listen on, such as 0.0.0.0:7000")
		} else {
			p.HostPort(path+".listen", r.Listen, true)
			f.Listen = strings.TrimSpace(r.Listen)
			key := f.Protocol + "/" + f.Listen
			if prev, dup := listens[key]; dup && !strings.HasSuffix(f.Listen, ":0") {
				p.Fail(path+".listen", "%s is already used by forward[%d]", key, prev)
			}
			listens[key] = n
		}
		switch {
		case len(r.Upstreams) > 0 && (r.Peer != "" || r.To != ""):
			p.Fail(path+".upstreams", "give peer and to, or upstreams, not both")
		case len(r.Upstreams) > 0:
			p.upstreams(path, r.Upstreams, c, &f)
		default:
			u, ok := p.upstream(path, rawUpstream{Peer: r.Peer, To: r.To}, c)
			if ok {
				f.Upstreams = []Upstream{u}
			}
			f.Peer, f.To = r.Peer, u.To
		}
		if len(f.Upstreams) > 0 {
			f.Peer, f.To = f.Upstreams[0].Peer, f.Upstreams[0].To
		}
		c.Forward = append(c.Forward, f)
	}
}

// upstreams checks a forward rule's list of upstreams and appends the good
// ones to f.Upstreams. An upstream may state its protocol; it must agree
// with the rule's (or, when the rule's is missing, with the first upstream
// that states one).
func (p *parser) upstreams(path string, rs []rawUpstream, c *Config, f *Forward) {
	seen := map[netip.AddrPort]int{}
	proto, protoFrom := f.Protocol, ""
	for m, r := range rs {
		upath := fmt.Sprintf("%s.upstreams[%d]", path, m)
		if r.Protocol != "" {
			up := p.protocol(upath+".protocol", r.Protocol)
			switch {
			case up == "":
			case proto == "" && protoFrom == "":
				proto, protoFrom = up, upath
			case up != proto && protoFrom != "":
				p.Fail(upath+".protocol", "%s disagrees with %s of %s: every upstream of a rule carries one protocol", up, proto, protoFrom)
			case up != proto:
				p.Fail(upath+".protocol", "%s disagrees with the rule's protocol %s", up, proto)
			}
		}
		u, ok := p.upstream(upath, r, c)
		if !ok {
			continue
		}
		if prev, dup := seen[u.To]; dup {
			p.Fail(upath+".to", "%s is already %s.upstreams[%d]", u.To, path, prev)
			continue
		}
		seen[u.To] = m
		f.Upstreams = append(f.Upstreams, u)
	}
}

// upstream checks one upstream: a known peer, and an address:port inside
// that peer's allowedIPs. path names the rule (peer and to) or the
// upstreams entry.
func (p *parser) upstream(path string, r rawUpstream, c *Config) (Upstream, bool) {
	u := Upstream{Peer: r.Peer}
	ok := true
	peer := c.PeerByName(r.Peer)
	switch {
	case r.Peer == "":
		p.Fail(path+".peer", "required: the peer whose exposed port this forwards to")
		ok = false
	case peer == nil:
		p.Fail(path+".peer", "%q is not a peer; known peers: %s", r.Peer, peerNames(c))
		ok = false
	}
	if r.To == "" {
		p.Fail(path+".to", "required: the peer's tunnel address and port, such as 10.99.0.1:7000")
		return u, false
	}
	ap, err := netip.ParseAddrPort(strings.TrimSpace(r.To))
	if err != nil || ap.Port() == 0 {
		p.Fail(path+".to", "%q is not an address:port (such as 10.99.0.1:7000)", r.To)
		return u, false
	}
	u.To = netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
	if peer != nil && !prefixesContain(peer.AllowedIPs, u.To.Addr()) {
		p.Fail(path+".to", "%s is not one of peer %q's addresses (%s)", u.To.Addr(), peer.Name, prefixList(peer.AllowedIPs))
		ok = false
	}
	return u, ok
}

func (p *parser) limits(r *rawLimits, l *Limits) {
	l.UDPIdleTimeout = DefaultUDPIdleTimeout
	l.UDPMaxSessions = DefaultUDPMaxSessions
	l.UDPDialTimeout = DefaultUDPDialTimeout
	l.TCPDialTimeout = DefaultTCPDialTimeout
	l.TCPMaxConnections = DefaultTCPMaxConnections
	p.positiveDuration("limits.udpIdleTimeout", r.UDPIdleTimeout, &l.UDPIdleTimeout)
	p.positiveDuration("limits.udpDialTimeout", r.UDPDialTimeout, &l.UDPDialTimeout)
	p.positiveDuration("limits.tcpDialTimeout", r.TCPDialTimeout, &l.TCPDialTimeout)
	if r.UDPMaxSessions != "" {
		l.UDPMaxSessions = p.count("limits.udpMaxSessions", r.UDPMaxSessions)
	}
	if r.TCPMaxConnections != "" {
		l.TCPMaxConnections = p.count("limits.tcpMaxConnections", r.TCPMaxConnections)
	}
}

// positiveDuration sets *d to the duration s at path, if s is given; a
// duration that is not positive is refused.
func (p *parser) positiveDuration(path, s string, d *time.Duration) {
	if s == "" {
		return
	}
	if v := p.duration(path, s); v > 0 {
		*d = v
	} else {
		p.Fail(path, "must be positive")
	}
}

func (p *parser) ruleName(path, name string, names map[string]int, n int, kind string) {
	switch {
	case name == "":
		p.Fail(path+".name", "required: a name for the rule, used in metrics and status")
	case !keys.ValidName(name):
		p.Fail(path+".name", "%q is not a valid name (lowercase letters, digits and '-', up to 63)", name)
	default:
		if prev, dup := names[name]; dup {
			p.Fail(path+".name", "%q is already the name of %s[%d]", name, kind, prev)
		}
		names[name] = n
	}
}

func (p *parser) protocol(path, s string) string {
	switch strings.TrimSpace(s) {
	case TCP:
		return TCP
	case UDP:
		return UDP
	case "":
		p.Fail(path, "required: tcp or udp")
	default:
		p.Fail(path, "%q is not tcp or udp", s)
	}
	return ""
}

func (p *parser) port(path, s string, allowZero bool) int {
	v, err := strconv.Atoi(strings.TrimSpace(s))
	if err != nil || v < 0 || v > 65535 || (v == 0 && !allowZero) {
		p.Fail(path, "%q is not a port (1-65535)", s)
		return 0
	}
	return v
}

func (p *parser) count(path, s string) int {
	v, err := strconv.Atoi(strings.TrimSpace(s))
	if err != nil || v < 1 || v > 1<<20 {
		p.Fail(path, "%q is not a count between 1 and 1048576", s)
		return 1
	}
	return v
}

func (p *parser) duration(path, s string) time.Duration {
	d, err := time.ParseDuration(strings.TrimSpace(s))
	if err != nil {
		p.Fail(path, "%q is not a duration (such as 25s, 2m)", s)
		return 0
	}
	return d
}

func cleanNetipErr(err error) string {
	s := err.Error()
	if i := strings.LastIndex(s, "): "); i >= 0 {
		return s[i+3:]
	}
	return s
}

func prefixesContain(ps []netip.Prefix, a netip.Addr) bool {
	for _, p := range ps {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

func prefixList(ps []netip.Prefix) string {
	s := make([]string, len(ps))
	for i, p := range ps {
		s[i] = p.String()
	}
	return strings.Join(s, ", ")
}

func peerNames(c *Config) string {
	var s []string
	for _, p := range c.Peers {
		if p.Name != "" {
			s = append(s, p.Name)
		}
	}
	if len(s) == 0 {
		return "(none)"
	}
	return strings.Join(s, ", ")
}
