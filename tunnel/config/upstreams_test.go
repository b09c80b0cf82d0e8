package config

import (
	"bytes"
	"strings"
	"testing"
)

// haConfig is the worker side of a pair of gateways a side: two peers
// (the two replicas across the tunnel, each its own key and address) and a
// rule that fails over from one to the other.
const haConfig = `
interface:
  privateKeyFile: /keys/private.key
  listenPort: 51820
  addresses: [10.99.0.2]
peers:
  - name: eks-a
    publicKey: 6B0U4PKrk3dBsB+mr5Pe2gqlyBWLj0Nqsmdq8kN3OyU=
    persistentKeepalive: 1s
    allowedIPs: [10.99.0.1/32]
  - name: eks-b
    publicKey: xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dg=
    persistentKeepalive: 1s
    allowedIPs: [10.99.0.11/32]
forward:
  - name: relay
    protocol: udp
    listen: 0.0.0.0:7443
    upstreams:
      - {peer: eks-a, to: "10.99.0.1:7443"}
      - {peer: eks-b, to: "10.99.0.11:7443", protocol: udp}
`

func TestParseUpstreams(t *testing.T) {
	c, err := Parse([]byte(haConfig))
	if err != nil {
		t.Fatal(err)
	}
	f := c.Forward[0]
	if len(f.Upstreams) != 2 || f.Upstreams[0].String() != "eks-a 10.99.0.1:7443" || f.Upstreams[1].String() != "eks-b 10.99.0.11:7443" {
		t.Fatalf("upstreams = %v", f.Upstreams)
	}
	if f.Peer != "eks-a" || f.To.String() != "10.99.0.1:7443" {
		t.Errorf("peer, to = %s, %s; want the first upstream", f.Peer, f.To)
	}
	var b bytes.Buffer
	Describe(&b, c, nil)
	if want := "udp 0.0.0.0:7443 → eks-a 10.99.0.1:7443, then eks-b 10.99.0.11:7443  [rule relay]"; !strings.Contains(b.String(), want) {
		t.Errorf("description lacks %q:\n%s", want, b.String())
	}

	// The single form has one upstream.
	c, err = Parse([]byte(goodConfig))
	if err != nil {
		t.Fatal(err)
	}
	if us := c.Forward[0].Upstreams; len(us) != 1 || us[0].String() != "other 10.99.0.3:80" {
		t.Errorf("single-target rule: upstreams = %v", us)
	}
}

func TestParseUpstreamErrors(t *testing.T) {
	tests := []struct {
		name     string
		old, new string
		want     []string
	}{
		{"unknown peer", `{peer: eks-b, to: "10.99.0.11:7443", protocol: udp}`, `{peer: eks-c, to: "10.99.0.11:7443"}`,
			[]string{"forward[0].upstreams[1].peer:", `"eks-c" is not a peer; known peers: eks-a, eks-b`}},
		{"address outside the peer's allowedIPs", `{peer: eks-b, to: "10.99.0.11:7443", protocol: udp}`, `{peer: eks-b, to: "10.99.0.1:7444"}`,
			[]string{"forward[0].upstreams[1].to:", `10.99.0.1 is not one of peer "eks-b"'s addresses (10.99.0.11/32)`}},
		{"protocol disagrees with the rule", `protocol: udp}`, `protocol: tcp}`,
			[]string{"forward[0].upstreams[1].protocol:", "tcp disagrees with the rule's protocol udp"}},
		{"upstreams disagree", "    protocol: udp\n    listen", "    listen",
			[]string{"forward[0].protocol: required", "forward[0].upstreams[2].protocol:", "tcp disagrees with udp of forward[0].upstreams[1]"}},
		{"same upstream twice", `{peer: eks-b, to: "10.99.0.11:7443", protocol: udp}`, `{peer: eks-a, to: "10.99.0.1:7443"}`,
			[]string{"forward[0].upstreams[1].to:", "10.99.0.1:7443 is already forward[0].upstreams[0]"}},
		{"both forms", "    upstreams:", "    peer: eks-a\n    upstreams:",
			[]string{"forward[0].upstreams:", "give peer and to, or upstreams, not both"}},
		{"bad address", `to: "10.99.0.1:7443"}`, `to: "10.99.0.1"}`,
			[]string{"forward[0].upstreams[0].to:", "not an address:port"}},
		{"missing peer", `{peer: eks-a, to: "10.99.0.1:7443"}`, `{to: "10.99.0.1:7443"}`,
			[]string{"forward[0].upstreams[0].peer: required"}},
		{"two peers with one key", "xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dg=", "6B0U4PKrk3dBsB+mr5Pe2gqlyBWLj0Nqsmdq8kN3OyU=",
			[]string{"peers[1].publicKey:", "the same key as peers[0]", "each replica has its own"}},
		{"unknown field", `protocol: udp}`, `proto: udp}`,
			[]string{"forward[0].upstreams[1].proto: unknown field"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := haConfig
			if tt.name == "upstreams disagree" {
				in = strings.Replace(in, `protocol: udp}`, "protocol: udp}\n      - {peer: eks-b, to: \"10.99.0.11:7000\", protocol: tcp}", 1)
			}
			if !strings.Contains(in, tt.old) {
				t.Fatalf("test edit %q does not match", tt.old)
			}
			wantParseErrors(t, strings.Replace(in, tt.old, tt.new, 1), tt.want)
		})
	}
}
