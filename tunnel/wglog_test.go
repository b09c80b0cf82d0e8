package tunnel

import (
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.zx2c4.com/wireguard/conn"
	"golang.zx2c4.com/wireguard/device"
	"golang.zx2c4.com/wireguard/tun/tuntest"

	"github.com/tunnel-dev/tunnel/internal/testutil"
	"github.com/tunnel-dev/tunnel/keys"
)

// The refusals counted from wireguard-go's log lines, each caused for real
// on a wireguard-go device over loopback UDP: the exact line the gateway
// matches must be logged and counted. When wireguard-go rewords one, this
// fails instead of the metric staying at zero.
func TestWireGuardRefusalLines(t *testing.T) {
	v4 := func(src string) []byte {
		return tuntest.Ping(netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr(src))
	}
	tests := []struct {
		name string
		// peerKnown: the device knows the sender's key; senderKnowsUs:
		// the sender has the device's real public key.
		peerKnown, senderKnowsUs bool
		packet                   []byte
		line                     string
		counter                  func(*wgCounters) uint64
	}{
		{"spoofed IPv4 source", true, true, v4("10.0.0.3"), wgLineSpoofedV4, spoofedCount},
		{"spoofed IPv6 source", true, true, ipv6Header("fd00::3", "fd00::1"), wgLineSpoofedV6, spoofedCount},
		{"initiation from an unknown key", false, true, v4("10.0.0.2"), wgLineBadInitiation, refusedCount},
		{"initiation for another key", false, false, v4("10.0.0.2"), wgLineBadMAC1, refusedCount},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := newLoggedDevice(t)
			sender := testutil.PrivateKey(t)
			if tt.peerKnown {
				d.set(t, fmt.Sprintf("public_key=%s\nallowed_ip=10.0.0.2/32\nallowed_ip=fd00::2/128\n", sender.Public().UAPIHex()))
			}
			target := d.pub
			if !tt.senderKnowsUs {
				target = testutil.PrivateKey(t).Public()
			}
			tunS := startSender(t, sender, target, d.port)
			if tt.peerKnown {
				// The session works: a packet from the sender's own
				// address arrives and is not counted.
				tunS.Outbound <- v4("10.0.0.2")
				select {
				case <-d.tun.Inbound:
				case <-time.After(10 * time.Second):
					t.Fatal("no packet from the peer's own address arrived")
				}
				if n := tt.counter(&d.counters); n != 0 {
					t.Fatalf("a legitimate packet was counted (%d)", n)
				}
			}
			deadline := time.Now().Add(10 * time.Second)
			for tt.counter(&d.counters) == 0 {
				if time.Now().After(deadline) {
					t.Fatalf("not counted: wireguard-go never logged %q; lines it logged:\n%s", tt.line, strings.Join(d.lines(), "\n"))
				}
				select {
				case tunS.Outbound <- tt.packet:
				case <-time.After(100 * time.Millisecond):
				}
				time.Sleep(50 * time.Millisecond)
			}
			if !slices.Contains(d.lines(), tt.line) {
				t.Fatalf("counted, but %q was not among the lines logged", tt.line)
			}
			// A refused initiation's argument is its source, which the
			// gateway's rate-limited line names.
			if tt.line == wgLineBadInitiation && !d.log.Contains("source=127.0.0.1:") {
				t.Fatalf("the refusal line does not name the sender's address:\n%s", d.log.String())
			}
		})
	}
}

func spoofedCount(c *wgCounters) uint64 { return c.spoofed.Load() }
func refusedCount(c *wgCounters) uint64 { return c.handshakeRefused.Load() }

// loggedDevice is a wireguard-go device on loopback with the gateway's
// logger, recording every verbose format it logs.
type loggedDevice struct {
	dev      *device.Device
	tun      *tuntest.ChannelTUN
	pub      keys.PublicKey
	port     int
	counters wgCounters
	auth     authEvents
	log      testutil.Buffer // the rate-limited refusal lines
	mu       sync.Mutex
	seen     []string
}

func newLoggedDevice(t *testing.T) *loggedDevice {
	t.Helper()
	d := &loggedDevice{tun: tuntest.NewChannelTUN()}
	d.auth.log.Store(d.log.Logger())
	d.auth.unknown.Every = unknownKeyLogEvery
	d.counters.auth = &d.auth
	l := wgLogger(slog.New(slog.DiscardHandler), &d.counters)
	verbose := l.Verbosef
	l.Verbosef = func(format string, args ...any) {
		d.mu.Lock()
		d.seen = append(d.seen, format)
		d.mu.Unlock()
		verbose(format, args...)
	}
	d.dev = device.NewDevice(d.tun.TUN(), conn.NewDefaultBind(), l)
	t.Cleanup(d.dev.Close)
	priv := testutil.PrivateKey(t)
	d.pub = priv.Public()
	d.set(t, fmt.Sprintf("private_key=%s\nlisten_port=0\n", priv.UAPIHex()))
	if err := d.dev.Up(); err != nil {
		t.Fatal(err)
	}
	s, err := d.dev.IpcGet()
	if err != nil {
		t.Fatal(err)
	}
	st, err := parseUAPIGet(s)
	if err != nil {
		t.Fatal(err)
	}
	d.port = st.ListenPort
	return d
}

func (d *loggedDevice) set(t *testing.T, uapi string) {
	t.Helper()
	if err := d.dev.IpcSet(uapi); err != nil {
		t.Fatal(err)
	}
}

func (d *loggedDevice) lines() []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return slices.Clone(d.seen)
}

// startSender starts a device with key priv whose only peer is peer at
// 127.0.0.1:port, reaching every address through it. Packets sent on the
// returned TUN's Outbound go to that peer.
func startSender(t *testing.T, priv keys.PrivateKey, peer keys.PublicKey, port int) *tuntest.ChannelTUN {
	t.Helper()
	tn := tuntest.NewChannelTUN()
	dev := device.NewDevice(tn.TUN(), conn.NewDefaultBind(), device.NewLogger(device.LogLevelSilent, ""))
	t.Cleanup(dev.Close)
	err := dev.IpcSet(fmt.Sprintf("private_key=%s\nlisten_port=0\npublic_key=%s\nendpoint=127.0.0.1:%d\nallowed_ip=0.0.0.0/0\nallowed_ip=::/0\n",
		priv.UAPIHex(), peer.UAPIHex(), port))
	if err != nil {
		t.Fatal(err)
	}
	if err := dev.Up(); err != nil {
		t.Fatal(err)
	}
	return tn
}

// ipv6Header is an IPv6 packet with no payload (next header 59: none).
func ipv6Header(src, dst string) []byte {
	b := make([]byte, 40)
	b[0] = 6 << 4
	b[6], b[7] = 59, 64
	s, d := netip.MustParseAddr(src).As16(), netip.MustParseAddr(dst).As16()
	copy(b[8:24], s[:])
	copy(b[24:40], d[:])
	return b
}
