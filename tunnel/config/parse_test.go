package config

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tunnel-dev/tunnel/keys"
)

const goodConfig = `
interface:
  privateKeyFile: /keys/private.key
  listenPort: 51820
  addresses: [10.99.0.1]
peers:
  - name: bunny
    publicKey: 6B0U4PKrk3dBsB+mr5Pe2gqlyBWLj0Nqsmdq8kN3OyU=
    endpoint: gw.example.com:51820
    persistentKeepalive: 25s
    allowedIPs: [10.99.0.2/32]
  - name: other
    publicKey: xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dg=
    allowedIPs: [10.99.0.3/32]
expose:
  - name: relay
    protocol: udp
    port: 7000
    target: relay.relay.svc:7000
    peers: [bunny]
forward:
  - name: back
    protocol: tcp
    listen: 127.0.0.1:8000
    peer: other
    to: 10.99.0.3:80
limits:
  udpIdleTimeout: 90s
`

func TestParseGood(t *testing.T) {
	c, err := Parse([]byte(goodConfig))
	if err != nil {
		t.Fatal(err)
	}
	if got := c.Interface.Name; got != DefaultName {
		t.Errorf("name = %q, want default %q", got, DefaultName)
	}
	if c.Interface.MTU != 1420 || c.Interface.ListenPort != 51820 {
		t.Errorf("interface = %+v", c.Interface)
	}
	if len(c.Peers) != 2 || c.Peers[0].PersistentKeepalive != 25*time.Second || c.Peers[0].Key.IsZero() {
		t.Errorf("peers = %+v", c.Peers)
	}
	if c.Expose[0].Port != 7000 || c.Expose[0].Protocol != UDP || c.Expose[0].Peers[0] != "bunny" {
		t.Errorf("expose = %+v", c.Expose)
	}
	if c.Forward[0].To.String() != "10.99.0.3:80" {
		t.Errorf("forward = %+v", c.Forward)
	}
	if c.Limits.UDPIdleTimeout != 90*time.Second || c.Limits.TCPMaxConnections != DefaultTCPMaxConnections ||
		c.Limits.UDPDialTimeout != DefaultUDPDialTimeout || c.Limits.TCPDialTimeout != DefaultTCPDialTimeout {
		t.Errorf("limits = %+v", c.Limits)
	}
	if c.Admin.Listen != DefaultAdminListen {
		t.Errorf("admin = %+v", c.Admin)
	}
}

func TestParseExamples(t *testing.T) {
	files, err := filepath.Glob("../../docs/examples/gateway-*.yaml")
	if err != nil || len(files) < 2 {
		t.Fatalf("want the two example configs in docs/examples, got %v (%v)", files, err)
	}
	for _, f := range files {
		if _, err := Load(f); err != nil {
			t.Errorf("%s: %v", f, err)
		}
	}
}

func TestParseErrors(t *testing.T) {
	tests := []struct {
		name string
		edit func(string) string
		want []string // substrings of the error
	}{
		{"unknown field", func(s string) string {
			return strings.Replace(s, "  listenPort: 51820", "  listenPort: 51820\n  lisenPort: 1", 1)
		},
			[]string{"5: interface.lisenPort: unknown field", "known fields of interface: addresses, listenPort"}},
		{"case of a field", func(s string) string { return strings.Replace(s, "privateKeyFile", "privatekeyfile", 1) },
			[]string{"did you mean \"privateKeyFile\""}},
		{"bad key", func(s string) string {
			return strings.Replace(s, "6B0U4PKrk3dBsB+mr5Pe2gqlyBWLj0Nqsmdq8kN3OyU=", "notakey", 1)
		},
			[]string{"8: peers[0].publicKey:", "not base64"}},
		{"short key", func(s string) string {
			return strings.Replace(s, "6B0U4PKrk3dBsB+mr5Pe2gqlyBWLj0Nqsmdq8kN3OyU=", "AAAA", 1)
		},
			[]string{"peers[0].publicKey:", "decodes to 3 bytes"}},
		{"zero key", func(s string) string {
			return strings.Replace(s, "6B0U4PKrk3dBsB+mr5Pe2gqlyBWLj0Nqsmdq8kN3OyU=", "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=", 1)
		}, []string{"peers[0].publicKey:", "weak key"}},
		{"bad cidr", func(s string) string { return strings.Replace(s, "10.99.0.2/32", "10.99.0.2/33", 1) },
			[]string{"11: peers[0].allowedIPs[0]:", "not a CIDR"}},
		{"cidr without length", func(s string) string { return strings.Replace(s, "10.99.0.2/32", "10.99.0.2", 1) },
			[]string{"peers[0].allowedIPs[0]:", "10.99.0.2/32"}},
		{"host bits", func(s string) string { return strings.Replace(s, "10.99.0.2/32", "10.99.0.2/24", 1) },
			[]string{"host bits", "10.99.0.0/24"}},
		{"overlap", func(s string) string { return strings.Replace(s, "10.99.0.3/32", "10.99.0.2/32", 1) },
			[]string{"peers[1].allowedIPs[0]:", "overlaps"}},
		{"bad port", func(s string) string { return strings.Replace(s, "port: 7000", "port: 70000", 1) },
			[]string{"expose[0].port:", "not a port"}},
		{"bad listen port", func(s string) string { return strings.Replace(s, "listenPort: 51820", "listenPort: x", 1) },
			[]string{"interface.listenPort:", "not a port"}},
		{"unknown peer in rule", func(s string) string { return strings.Replace(s, "peers: [bunny]", "peers: [bunyn]", 1) },
			[]string{"expose[0].peers[0]:", "\"bunyn\" is not a peer", "known peers: bunny, other"}},
		{"forward to unknown peer", func(s string) string { return strings.Replace(s, "peer: other", "peer: nobody", 1) },
			[]string{"forward[0].peer:", "not a peer"}},
		{"forward outside peer", func(s string) string { return strings.Replace(s, "to: 10.99.0.3:80", "to: 10.99.0.9:80", 1) },
			[]string{"forward[0].to:", "not one of peer \"other\"'s addresses"}},
		{"bad protocol", func(s string) string { return strings.Replace(s, "protocol: udp", "protocol: sctp", 1) },
			[]string{"expose[0].protocol:", "not tcp or udp"}},
		{"bad duration", func(s string) string { return strings.Replace(s, "25s", "25", 1) },
			[]string{"peers[0].persistentKeepalive:", "not a duration"}},
		{"zero UDP dial timeout", func(s string) string {
			return strings.Replace(s, "udpIdleTimeout: 90s", "udpIdleTimeout: 90s\n  udpDialTimeout: 0s", 1)
		}, []string{"limits.udpDialTimeout:", "must be positive"}},
		{"bad address", func(s string) string { return strings.Replace(s, "[10.99.0.1]", "[10.99.0.256]", 1) },
			[]string{"interface.addresses[0]:", "not an IP address"}},
		{"missing key file", func(s string) string { return strings.Replace(s, "  privateKeyFile: /keys/private.key\n", "", 1) },
			[]string{"interface.privateKeyFile: required"}},
		{"endpoint without port", func(s string) string { return strings.Replace(s, "gw.example.com:51820", "gw.example.com", 1) },
			[]string{"peers[0].endpoint:", "missing port"}},
		{"list where a value goes", func(s string) string { return strings.Replace(s, "target: relay.relay.svc:7000", "target: [a, b]", 1) },
			[]string{"expose[0].target: want a single value"}},
		{"duplicate port", func(s string) string {
			return s + "  - name: relay2\n    protocol: udp\n    port: 7000\n    target: x:1\n    peers: [bunny]\n"
		}, []string{"expose[1].port:", "udp/7000 is already exposed"}},
		{"not yaml", func(string) string { return "interface: [" }, []string{"invalid configuration"}},
		{"empty", func(string) string { return "" }, []string{"empty"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := tt.edit(goodConfig)
			if tt.name == "duplicate port" {
				// Append the rule inside the expose list.
				in = strings.Replace(goodConfig, "forward:", "  - name: relay2\n    protocol: udp\n    port: 7000\n    target: x:1\n    peers: [bunny]\nforward:", 1)
			}
			wantParseErrors(t, in, tt.want)
		})
	}
}

// wantParseErrors parses in and wants config.Errors containing every one
// of want.
func wantParseErrors(t *testing.T, in string, want []string) {
	t.Helper()
	c, err := Parse([]byte(in))
	if err == nil {
		t.Fatalf("parsed %+v, want an error", c)
	}
	var es Errors
	if !errors.As(err, &es) {
		t.Fatalf("error %T is not config.Errors: %v", err, err)
	}
	for _, w := range want {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error %q does not contain %q", err, w)
		}
	}
}

func TestParseCollectsEveryProblem(t *testing.T) {
	in := strings.NewReplacer("port: 7000", "port: 0", "10.99.0.2/32", "bad", "protocol: tcp", "protocol: x").Replace(goodConfig)
	_, err := Parse([]byte(in))
	var es Errors
	if !errors.As(err, &es) || len(es) != 3 {
		t.Fatalf("want 3 problems, got %v", err)
	}
}

// Unknown fields come with every other problem, in file order, each with
// "did you mean" when it is a near miss; placeholders are problems too
// except in a template.
func TestParseUnknownFieldsWithTheRest(t *testing.T) {
	in := strings.NewReplacer("    listen: 127.0.0.1:8000", "    lisen: 127.0.0.1:8000", "port: 7000", "port: 0",
		"  - name: other", "  - nmae: other").Replace(goodConfig)
	_, err := Parse([]byte(in))
	var es Errors
	if !errors.As(err, &es) {
		t.Fatalf("want Errors, got %v", err)
	}
	var got []string
	for _, e := range es {
		got = append(got, fmt.Sprintf("%d %s", e.Line, e.Path))
	}
	// Not "forward[0].listen: required": the near miss says it.
	want := "[12 peers[1].nmae 18 expose[0].port 24 forward[0].lisen 25 forward[0].peer]"
	if fmt.Sprint(got) != want {
		t.Fatalf("problems %v, want %s:\n%v", got, want, err)
	}
	for _, w := range []string{`forward[0].lisen: unknown field (did you mean "listen"?)`, `peers[1].nmae: unknown field (did you mean "name"?)`, "4 problems"} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error lacks %q:\n%v", w, err)
		}
	}

	in = strings.Replace(goodConfig, "gw.example.com:51820", "gw-REPLACE.example.com:51820", 1)
	if _, err := Parse([]byte(in)); err == nil || !strings.Contains(err.Error(), `9: peers[0].endpoint: "gw-REPLACE.example.com:51820" is a placeholder`) {
		t.Fatalf("placeholder: %v", err)
	}
	if c, err := ParseTemplate([]byte(in)); err != nil || c.Peers[0].Endpoint != "gw-REPLACE.example.com:51820" {
		t.Fatalf("template: %v", err)
	}
}

func TestLoadNamesTheFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "gw.yaml")
	if err := os.WriteFile(path, []byte(strings.Replace(goodConfig, "mtu", "x", 1)+"interface2: {}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := Load(path)
	if err == nil || !strings.Contains(err.Error(), path+":") {
		t.Fatalf("error %v does not name %s", err, path)
	}
	if _, err := Load(filepath.Join(dir, "missing.yaml")); err == nil || !strings.Contains(err.Error(), "missing.yaml") {
		t.Fatalf("missing file: %v", err)
	}
}

func TestDescribe(t *testing.T) {
	c, err := Parse([]byte(goodConfig))
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	Describe(&b, c, nil)
	out := b.String()
	for _, want := range []string{
		"peer bunny (key …8kN3OyU=) may reach udp/7000 → relay.relay.svc:7000",
		"local tcp/127.0.0.1:8000 → peer other (key …mZqp8Dg=) at 10.99.0.3:80",
		"nothing else answers on 10.99.0.1",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("description lacks %q:\n%s", want, out)
		}
	}
}

func FuzzParse(f *testing.F) {
	f.Add([]byte(goodConfig))
	f.Add([]byte(haConfig))
	f.Add([]byte("interface: {addresses: [::1]}\npeers: [{name: a}]"))
	f.Add([]byte("expose: [{peers: [[x]]}]"))
	f.Add([]byte("a: &x [*x]"))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := Parse(data)
		if err != nil {
			if c != nil {
				t.Fatal("config returned with an error")
			}
			if err.Error() == "" {
				t.Fatal("empty error")
			}
			return
		}
		// Whatever parses must be internally consistent.
		if len(c.Interface.Addresses) == 0 || len(c.Peers) == 0 || c.Interface.PrivateKeyFile == "" {
			t.Fatalf("accepted an incomplete config: %+v", c)
		}
		for _, e := range c.Expose {
			if e.Port == 0 || len(e.Peers) == 0 {
				t.Fatalf("accepted a bad expose rule: %+v", e)
			}
			for _, p := range e.Peers {
				if c.PeerByName(p) == nil {
					t.Fatalf("rule names unknown peer %q", p)
				}
			}
		}
		var b bytes.Buffer
		Describe(&b, c, nil)
	})
}

func TestPeerKeyFiles(t *testing.T) {
	dir := t.TempDir()
	k1, k2, k3 := "6B0U4PKrk3dBsB+mr5Pe2gqlyBWLj0Nqsmdq8kN3OyU=", "xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dg=", "qQ4nHx1RJwUg+hI0k5tbdC6HMkiOZ3R3ceVIw0qtGnk="
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	cfg := func(keyFile string) string {
		return fmt.Sprintf("interface: {privateKeyFile: x, addresses: [10.99.0.1]}\npeers: [{name: a, publicKeyFile: %s, allowedIPs: [10.99.0.2/32]}]\n", keyFile)
	}
	one := write("one.pub", k1+"\n")
	two := write("two.pub", "# rotating\n"+k1+"\n"+k2+"\n")
	c, err := Load(write("c1.yaml", cfg(one)))
	if err != nil || c.Peers[0].Key.String() != k1 || c.Peers[0].NextKey != nil {
		t.Fatalf("one key: %+v %v", c, err)
	}
	c, err = Load(write("c2.yaml", cfg(two)))
	if err != nil || c.Peers[0].Key.String() != k1 || c.Peers[0].NextKey == nil || c.Peers[0].NextKey.String() != k2 {
		t.Fatalf("two keys: %+v %v", c, err)
	}
	var b bytes.Buffer
	Describe(&b, c, nil)
	if !strings.Contains(b.String(), "successor key") {
		t.Errorf("describe does not mention the successor:\n%s", b.String())
	}
	for name, body := range map[string]string{
		"three.pub": k1 + "\n" + k2 + "\n" + k3 + "\n",
		"dup.pub":   k1 + "\n" + k1 + "\n",
		"empty.pub": "# nothing\n",
		"bad.pub":   "AAAA\n",
	} {
		_, err := Load(write("c-"+name+".yaml", cfg(write(name, body))))
		if err == nil || !strings.Contains(err.Error(), "peers[0].publicKeyFile") {
			t.Errorf("%s: %v", name, err)
		}
	}
	if _, err := LoadOffline(write("c-missing.yaml", cfg(filepath.Join(dir, "missing.pub")))); err != nil {
		t.Errorf("offline load read the key file: %v", err)
	}
	// Inline successor.
	c, err = Parse([]byte(fmt.Sprintf("interface: {privateKeyFile: x, addresses: [10.99.0.1]}\npeers: [{name: a, publicKey: %s, nextPublicKey: %s, allowedIPs: [10.99.0.2/32]}]\n", k1, k2)))
	if err != nil || c.Peers[0].NextKey == nil {
		t.Fatalf("inline successor: %v", err)
	}
	if _, err := Parse([]byte(fmt.Sprintf("interface: {privateKeyFile: x, addresses: [10.99.0.1]}\npeers: [{name: a, publicKey: %s, nextPublicKey: %s, allowedIPs: [10.99.0.2/32]}]\n", k1, k1))); err == nil {
		t.Fatal("successor equal to the key")
	}
}

// CheckKeys reports every problem with the keys the gateway would read,
// each naming its field.
func TestCheckKeys(t *testing.T) {
	dir := t.TempDir()
	pub, err := keys.WriteKeyPair(dir, false)
	if err != nil {
		t.Fatal(err)
	}
	in := strings.NewReplacer("/keys/private.key", filepath.Join(dir, keys.PrivateKeyFile),
		"6B0U4PKrk3dBsB+mr5Pe2gqlyBWLj0Nqsmdq8kN3OyU=", pub.String(),
		"    allowedIPs: [10.99.0.3/32]", "    allowedIPs: [10.99.0.3/32]\n    presharedKeyFile: "+filepath.Join(dir, "missing.psk")).Replace(goodConfig)
	c, err := Parse([]byte(in))
	if err != nil {
		t.Fatal(err)
	}
	got, err := CheckKeys(c)
	var es Errors
	if got != pub || !errors.As(err, &es) || len(es) != 2 || es[0].Path != "peers[0]" || !strings.Contains(es[0].Msg, "this gateway's own public key") || es[1].Path != "peers[1].presharedKeyFile" {
		t.Fatalf("CheckKeys: %v %v", got, err)
	}
}
