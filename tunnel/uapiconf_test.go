package tunnel

import (
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/tunnel-dev/tunnel/keys"
)

func TestUAPIRoundTrip(t *testing.T) {
	priv, _ := keys.GeneratePrivateKey()
	peerPriv, _ := keys.GeneratePrivateKey()
	psk, _ := keys.GeneratePresharedKey()
	nextPriv, _ := keys.GeneratePrivateKey()
	next := nextPriv.Public()
	pc := &peer{
		name: "bunny", key: peerPriv.Public(), next: &next, psk: &psk,
		endpoint:  netip.MustParseAddrPort("192.0.2.7:51820"),
		keepalive: 25 * time.Second,
		allowed:   []netip.Prefix{netip.MustParsePrefix("10.99.0.2/32")},
	}
	pc.owner = pc.key
	set := uapiSet(priv, 51820, []*peer{pc})
	if !strings.Contains(set, "replace_peers=true") || strings.Count(set, "allowed_ip=10.99.0.2/32") != 1 {
		t.Fatalf("set = %q", set)
	}
	// Both keys are device peers; only the owner holds the address.
	owner := set[strings.Index(set, "public_key="+pc.key.UAPIHex()):strings.Index(set, "public_key="+next.UAPIHex())]
	if !strings.Contains(owner, "allowed_ip=10.99.0.2/32") {
		t.Fatalf("the active key does not own the address: %q", owner)
	}
	// What a device reports, with the secrets a "get" carries.
	get := "private_key=" + priv.UAPIHex() + "\nlisten_port=51820\n" +
		"public_key=" + pc.key.UAPIHex() + "\npreshared_key=" + psk.UAPIHex() + "\nprotocol_version=1\n" +
		"endpoint=192.0.2.7:51820\nlast_handshake_time_sec=1700000000\nlast_handshake_time_nsec=5\n" +
		"tx_bytes=10\nrx_bytes=20\npersistent_keepalive_interval=25\nallowed_ip=10.99.0.2/32\nerrno=0\n"
	st, err := parseUAPIGet(get)
	if err != nil {
		t.Fatal(err)
	}
	if st.ListenPort != 51820 || len(st.Peers) != 1 {
		t.Fatalf("state = %+v", st)
	}
	p := st.Peers[0]
	if p.Key != pc.key || p.Endpoint != "192.0.2.7:51820" || p.RxBytes != 20 || p.TxBytes != 10 ||
		p.Keepalive != 25*time.Second || p.LastHandshake.Unix() != 1700000000 || len(p.AllowedIPs) != 1 {
		t.Fatalf("peer = %+v", p)
	}
}

func TestParseUAPIGetErrors(t *testing.T) {
	for _, in := range []string{
		"endpoint=1.2.3.4:5\n",                          // before any peer
		"listen_port=x\n",                               // not a number
		"public_key=abc\n",                              // short key
		"public_key=" + strings.Repeat("zz", 32) + "\n", // not hex
		"garbage\n",
	} {
		if _, err := parseUAPIGet(in); err == nil {
			t.Errorf("parsed %q", in)
		}
	}
}

func FuzzParseUAPIGet(f *testing.F) {
	f.Add("listen_port=1\npublic_key=" + strings.Repeat("ab", 32) + "\nrx_bytes=1\nallowed_ip=10.0.0.1/32\n")
	f.Add("private_key=" + strings.Repeat("01", 32) + "\n")
	f.Fuzz(func(t *testing.T, s string) {
		st, err := parseUAPIGet(s)
		if err != nil {
			if strings.Contains(err.Error(), strings.Repeat("01", 32)) {
				t.Fatal("error carries key material")
			}
			return
		}
		for _, p := range st.Peers {
			_ = p.Key.String()
		}
	})
}
