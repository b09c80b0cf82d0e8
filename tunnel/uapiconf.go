package tunnel

import (
	"bufio"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/tunnel-dev/tunnel/keys"
)

// uapiSet renders a full device configuration in wireguard-go's
// configuration protocol. The result holds key material: it goes to IpcSet
// and nowhere else.
func uapiSet(priv keys.PrivateKey, listenPort int, peers []*peer) string {
	var b strings.Builder
	fmt.Fprintf(&b, "private_key=%s\n", priv.UAPIHex())
	fmt.Fprintf(&b, "listen_port=%d\n", listenPort)
	b.WriteString("replace_peers=true\n")
	for _, p := range peers {
		for _, k := range p.deviceKeys() {
			writePeer(&b, p, k, false)
		}
	}
	return b.String()
}

// writePeer renders one device peer: one of a configured peer's keys. Only
// the key that owns the peer's addresses gets them; a staged successor
// gets none until it takes over.
func writePeer(b *strings.Builder, p *peer, key keys.PublicKey, updateOnly bool) {
	fmt.Fprintf(b, "public_key=%s\n", key.UAPIHex())
	if updateOnly {
		b.WriteString("update_only=true\n")
	}
	if p.psk != nil {
		fmt.Fprintf(b, "preshared_key=%s\n", p.psk.UAPIHex())
	} else {
		b.WriteString("preshared_key=0000000000000000000000000000000000000000000000000000000000000000\n")
	}
	if p.endpoint.IsValid() {
		fmt.Fprintf(b, "endpoint=%s\n", p.endpoint)
	}
	fmt.Fprintf(b, "persistent_keepalive_interval=%d\n", int(p.keepalive/time.Second))
	b.WriteString("replace_allowed_ips=true\n")
	if key == p.owner {
		for _, a := range p.allowed {
			fmt.Fprintf(b, "allowed_ip=%s\n", a)
		}
	}
}

// uapiRemove removes one device peer.
func uapiRemove(key keys.PublicKey) string {
	return fmt.Sprintf("public_key=%s\nremove=true\n", key.UAPIHex())
}

// uapiEndpoint updates one device peer's endpoint only.
func uapiEndpoint(key keys.PublicKey, ep netip.AddrPort) string {
	return fmt.Sprintf("public_key=%s\nupdate_only=true\nendpoint=%s\n", key.UAPIHex(), ep)
}

// devicePeer is one peer as the device reports it.
type devicePeer struct {
	Key           keys.PublicKey
	Endpoint      string
	LastHandshake time.Time // zero: never
	RxBytes       uint64
	TxBytes       uint64
	Keepalive     time.Duration
	AllowedIPs    []netip.Prefix
}

// deviceState is the device's "get" output, without its secrets.
type deviceState struct {
	ListenPort int
	Peers      []devicePeer
}

// parseUAPIGet parses wireguard-go's "get" output. It skips private and
// preshared keys without keeping them.
func parseUAPIGet(s string) (deviceState, error) {
	var st deviceState
	var cur *devicePeer
	var sec, nsec int64
	flush := func() {
		if cur != nil {
			if sec != 0 || nsec != 0 {
				cur.LastHandshake = time.Unix(sec, nsec)
			}
			st.Peers = append(st.Peers, *cur)
		}
		sec, nsec = 0, 0
	}
	sc := bufio.NewScanner(strings.NewReader(s))
	for sc.Scan() {
		line := sc.Text()
		if line == "" {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			return st, fmt.Errorf("parsing device state: line without '=' (%q)", abbreviateLine(line))
		}
		var err error
		switch k {
		case "private_key", "preshared_key", "fwmark", "protocol_version", "errno":
		case "listen_port":
			st.ListenPort, err = strconv.Atoi(v)
		case "public_key":
			flush()
			cur = &devicePeer{}
			var raw []byte
			raw, err = parseHexKey(v)
			if err == nil {
				copy(cur.Key[:], raw)
			}
		default:
			if cur == nil {
				return st, fmt.Errorf("parsing device state: %q before any peer", k)
			}
			switch k {
			case "endpoint":
				cur.Endpoint = v
			case "last_handshake_time_sec":
				sec, err = strconv.ParseInt(v, 10, 64)
			case "last_handshake_time_nsec":
				nsec, err = strconv.ParseInt(v, 10, 64)
			case "rx_bytes":
				cur.RxBytes, err = strconv.ParseUint(v, 10, 64)
			case "tx_bytes":
				cur.TxBytes, err = strconv.ParseUint(v, 10, 64)
			case "persistent_keepalive_interval":
				var n int
				n, err = strconv.Atoi(v)
				cur.Keepalive = time.Duration(n) * time.Second
			case "allowed_ip":
				var p netip.Prefix
				p, err = netip.ParsePrefix(v)
				cur.AllowedIPs = append(cur.AllowedIPs, p)
			}
		}
		if err != nil {
			return st, fmt.Errorf("parsing device state: %s: %w", k, err)
		}
	}
	flush()
	return st, sc.Err()
}

func parseHexKey(v string) ([]byte, error) {
	if len(v) != 2*keys.KeyLen {
		return nil, fmt.Errorf("key of %d hex digits, want %d", len(v), 2*keys.KeyLen)
	}
	out := make([]byte, keys.KeyLen)
	for i := range out {
		hi, lo := unhex(v[2*i]), unhex(v[2*i+1])
		if hi > 15 || lo > 15 {
			return nil, fmt.Errorf("not hex")
		}
		out[i] = hi<<4 | lo
	}
	return out, nil
}

func unhex(c byte) byte {
	switch {
	case '0' <= c && c <= '9':
		return c - '0'
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10
	case 'A' <= c && c <= 'F':
		return c - 'A' + 10
	}
	return 255
}

func abbreviateLine(s string) string {
	if k, _, ok := strings.Cut(s, "="); ok {
		return k + "=…"
	}
	if len(s) > 20 {
		return s[:20] + "…"
	}
	return s
}
