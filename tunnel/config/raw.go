package config

// The raw form is what the YAML file holds, every scalar as a string, so that
// each value is parsed here with an error naming its field and line, rather
// than by the YAML library's reflection with a message naming a Go type.

type rawConfig struct {
	Interface rawInterface `yaml:"interface"`
	Peers     []rawPeer    `yaml:"peers"`
	Expose    []rawExpose  `yaml:"expose"`
	Forward   []rawForward `yaml:"forward"`
	Limits    rawLimits    `yaml:"limits"`
	Admin     rawAdmin     `yaml:"admin"`
}

type rawInterface struct {
	Name           string   `yaml:"name"`
	PrivateKeyFile string   `yaml:"privateKeyFile"`
	ListenPort     string   `yaml:"listenPort"`
	Addresses      []string `yaml:"addresses"`
	MTU            string   `yaml:"mtu"`
	UAPIDir        string   `yaml:"uapiDir"`
}

type rawPeer struct {
	Name                string   `yaml:"name"`
	PublicKey           string   `yaml:"publicKey"`
	NextPublicKey       string   `yaml:"nextPublicKey"`
	PublicKeyFile       string   `yaml:"publicKeyFile"`
	PresharedKeyFile    string   `yaml:"presharedKeyFile"`
	Endpoint            string   `yaml:"endpoint"`
	PersistentKeepalive string   `yaml:"persistentKeepalive"`
	AllowedIPs          []string `yaml:"allowedIPs"`
}

type rawExpose struct {
	Name     string   `yaml:"name"`
	Protocol string   `yaml:"protocol"`
	Port     string   `yaml:"port"`
	Target   string   `yaml:"target"`
	Peers    []string `yaml:"peers"`
}

type rawForward struct {
	Name      string        `yaml:"name"`
	Protocol  string        `yaml:"protocol"`
	Listen    string        `yaml:"listen"`
	Peer      string        `yaml:"peer"`
	To        string        `yaml:"to"`
	Upstreams []rawUpstream `yaml:"upstreams"`
}

type rawUpstream struct {
	Peer string `yaml:"peer"`
	To   string `yaml:"to"`
	// Protocol, if given, must be the rule's: a check that the upstreams
	// are one service reached several ways.
	Protocol string `yaml:"protocol"`
}

type rawLimits struct {
	UDPIdleTimeout    string `yaml:"udpIdleTimeout"`
	UDPMaxSessions    string `yaml:"udpMaxSessions"`
	UDPDialTimeout    string `yaml:"udpDialTimeout"`
	TCPDialTimeout    string `yaml:"tcpDialTimeout"`
	TCPMaxConnections string `yaml:"tcpMaxConnections"`
}

type rawAdmin struct {
	Listen string `yaml:"listen"`
	Pprof  string `yaml:"pprof"`
}
