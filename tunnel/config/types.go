package config

import (
	"net/netip"
	"time"

	"github.com/tunnel-dev/tunnel/keys"
)

// Config is a gateway's whole configuration.
type Config struct {
	Interface Interface `yaml:"interface"`
	Peers     []Peer    `yaml:"peers"`
	Expose    []Expose  `yaml:"expose"`
	Forward   []Forward `yaml:"forward"`
	Limits    Limits    `yaml:"limits"`
	Admin     Admin     `yaml:"admin"`
}

// Interface is the gateway's own side of the tunnel.
type Interface struct {
	// Name names the device: the UAPI socket is <UAPIDir>/<Name>.sock, so
	// `wg show <Name>` and `tunnel status` find it. Default "tunnel0".
	Name string `yaml:"name"`
	// PrivateKeyFile holds the base64 private key; it must not be readable
	// by group or others.
	PrivateKeyFile string `yaml:"privateKeyFile"`
	// ListenPort is the UDP port WireGuard listens on. Zero or absent: this
	// side only dials its peers (an ephemeral source port).
	ListenPort int `yaml:"listenPort"`
	// Addresses are the gateway's tunnel addresses.
	Addresses []netip.Addr `yaml:"addresses"`
	// MTU of the tunnel (inner packets). Default 1420.
	MTU int `yaml:"mtu"`
	// UAPIDir is where the WireGuard UAPI socket is made. Default
	// /var/run/wireguard, where `wg` and wgctrl look. "-" disables it.
	UAPIDir string `yaml:"uapiDir"`
}

// Peer is the other gateway (or a WireGuard peer of any kind).
type Peer struct {
	Name string `yaml:"name"`
	// PublicKey is the peer's key, inline. Exactly one of PublicKey and
	// PublicKeyFile is set.
	PublicKey string `yaml:"publicKey"`
	// NextPublicKey, with PublicKey, is a successor key staged during a
	// rotation: the peer may switch to it at any moment, and takes its
	// addresses with it when it does.
	NextPublicKey string `yaml:"nextPublicKey"`
	// PublicKeyFile holds the peer's key on its first line and, during a
	// rotation, the successor on its second: the form key stores write.
	PublicKeyFile    string `yaml:"publicKeyFile"`
	PresharedKeyFile string `yaml:"presharedKeyFile"`
	// Endpoint is host:port. The host may be a DNS name; it is re-resolved
	// when handshakes go stale.
	Endpoint            string         `yaml:"endpoint"`
	PersistentKeepalive time.Duration  `yaml:"persistentKeepalive"`
	AllowedIPs          []netip.Prefix `yaml:"allowedIPs"`

	// Key is the peer's key and NextKey its staged successor, if any;
	// set by Parse (inline keys) or ResolveFiles (PublicKeyFile).
	Key     keys.PublicKey  `yaml:"-"`
	NextKey *keys.PublicKey `yaml:"-"`
}

// Protocols a rule can carry.
const (
	TCP = "tcp"
	UDP = "udp"
)

// Expose makes one port on the gateway's tunnel addresses reach one target
// in the gateway's own network, for the named peers only.
type Expose struct {
	Name     string   `yaml:"name"`
	Protocol string   `yaml:"protocol"`
	Port     uint16   `yaml:"port"`
	Target   string   `yaml:"target"`
	Peers    []string `yaml:"peers"`
}

// Forward carries a local listener through the tunnel to a peer's tunnel
// address and port, or to the first healthy of several (Upstreams).
type Forward struct {
	Name     string `yaml:"name"`
	Protocol string `yaml:"protocol"`
	// Listen is the local (kernel) address, such as 0.0.0.0:7000.
	Listen string `yaml:"listen"`
	// Peer names the peer that owns To.
	Peer string `yaml:"peer"`
	// To is the peer's tunnel address and port.
	To netip.AddrPort `yaml:"to"`
	// Upstreams are where flows go, in order of preference: a flow uses
	// the first healthy one. Parse always fills it: a rule given as peer
	// and to has that one upstream, and Peer and To are always
	// Upstreams[0].
	Upstreams []Upstream `yaml:"upstreams"`
}

// Targets is f's upstreams in order: Upstreams, or the one given as Peer
// and To when Upstreams is empty (a Config built in code rather than
// parsed, as an embedding program may).
func (f Forward) Targets() []Upstream {
	if len(f.Upstreams) > 0 {
		return f.Upstreams
	}
	return []Upstream{{Peer: f.Peer, To: f.To}}
}

// Upstream is one place a forward rule's flows may go: a peer's tunnel
// address and port.
type Upstream struct {
	Peer string         `yaml:"peer"`
	To   netip.AddrPort `yaml:"to"`
}

// String is "peer address:port", as status and logs name an upstream.
func (u Upstream) String() string { return u.Peer + " " + u.To.String() }

// Limits bound what a gateway holds.
type Limits struct {
	// UDPIdleTimeout expires a UDP session with no traffic either way.
	// Default 2m: well above QUIC's 10 s keepalive.
	UDPIdleTimeout time.Duration `yaml:"udpIdleTimeout"`
	// UDPMaxSessions caps sessions per UDP rule. Default 1024.
	UDPMaxSessions int `yaml:"udpMaxSessions"`
	// UDPDialTimeout bounds opening a UDP session's socket to its target
	// or peer: resolving an expose target's name, mostly. Default 5s.
	UDPDialTimeout time.Duration `yaml:"udpDialTimeout"`
	// TCPDialTimeout bounds dialling a TCP target or peer. Default 10s.
	TCPDialTimeout time.Duration `yaml:"tcpDialTimeout"`
	// TCPMaxConnections caps concurrent connections per TCP rule. Default 1024.
	TCPMaxConnections int `yaml:"tcpMaxConnections"`
}

// Admin is the HTTP server for /metrics, /healthz, /readyz and /status.
type Admin struct {
	// Listen address. Default 127.0.0.1:9090; "-" disables it.
	Listen string `yaml:"listen"`
	// Pprof serves Go's profiler under /debug/pprof/. Default false.
	Pprof bool `yaml:"pprof"`
}

// Defaults.
const (
	DefaultName              = "tunnel0"
	DefaultMTU               = 1420
	DefaultUAPIDir           = "/var/run/wireguard"
	DefaultAdminListen       = "127.0.0.1:9090"
	DefaultUDPIdleTimeout    = 2 * time.Minute
	DefaultUDPMaxSessions    = 1024
	DefaultUDPDialTimeout    = 5 * time.Second
	DefaultTCPDialTimeout    = 10 * time.Second
	DefaultTCPMaxConnections = 1024
	Disabled                 = "-"
)

// PeerByName returns the named peer, or nil.
func (c *Config) PeerByName(name string) *Peer {
	for i := range c.Peers {
		if c.Peers[i].Name == name {
			return &c.Peers[i]
		}
	}
	return nil
}
