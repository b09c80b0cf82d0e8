package handshake

import (
	"errors"
	"flag"
	"fmt"
	"net"
	"net/netip"
	"os"
	"testing"
	"time"

	"golang.zx2c4.com/wireguard/conn"
	"golang.zx2c4.com/wireguard/device"
	"golang.zx2c4.com/wireguard/tun/tuntest"

	"github.com/tunnel-dev/tunnel/internal/testutil"
	"github.com/tunnel-dev/tunnel/keys"
	"github.com/tunnel-dev/tunnel/tunnel/handshake/handshaketest"
)

var update = flag.Bool("update", false, "capture a new testdata/initiation.txt from a wireguard-go device")

// capture has a real wireguard-go device, holding initiator, start a
// handshake with responder's public key at a UDP socket the test reads
// raw, and returns the first message it sends: the initiation.
func capture(t testing.TB, initiator keys.PrivateKey, responder keys.PublicKey, psk *keys.PrivateKey) []byte {
	t.Helper()
	sock, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer sock.Close()
	tun := tuntest.NewChannelTUN()
	dev := device.NewDevice(tun.TUN(), conn.NewDefaultBind(), device.NewLogger(device.LogLevelSilent, ""))
	defer dev.Close()
	uapi := fmt.Sprintf("private_key=%s\nlisten_port=0\npublic_key=%s\nendpoint=%s\nallowed_ip=10.0.0.1/32\n",
		initiator.UAPIHex(), responder.UAPIHex(), sock.LocalAddr())
	if psk != nil {
		uapi += "preshared_key=" + psk.UAPIHex() + "\n"
	}
	if err := dev.IpcSet(uapi); err != nil {
		t.Fatal(err)
	}
	if err := dev.Up(); err != nil {
		t.Fatal(err)
	}
	// A packet for the peer makes the device initiate.
	tun.Outbound <- tuntest.Ping(netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("10.0.0.2"))
	buf := make([]byte, 2048)
	if err := sock.SetReadDeadline(time.Now().Add(10 * time.Second)); err != nil {
		t.Fatal(err)
	}
	n, _, err := sock.ReadFromUDP(buf)
	if err != nil {
		t.Fatalf("no initiation from the wireguard-go device: %v", err)
	}
	if !IsInitiation(buf[:n]) {
		t.Fatalf("the device's first message is not an initiation: %d bytes, type %d", n, buf[0])
	}
	return buf[:n]
}

// loadGolden is the initiation captured once from a wireguard-go device,
// captured anew with -update.
func loadGolden(t testing.TB) handshaketest.Captured {
	t.Helper()
	if *update {
		responder, initiator := testutil.PrivateKey(t), testutil.PrivateKey(t)
		msg := capture(t, initiator, responder.Public(), nil)
		text := fmt.Sprintf("# A handshake initiation captured from wireguard-go; test-only keys.\nresponder-private %s\ninitiator-public %s\nmessage %x\n",
			responder.Base64(), initiator.Public(), msg)
		if err := os.WriteFile(handshaketest.File(), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return handshaketest.Load(t)
}

// tamper flips one bit of msg at off and, unless keepMAC, reseals mac1
// for responder so that the change reaches the decryption.
func tamper(msg []byte, off int, responder keys.PublicKey, keepMAC bool) []byte {
	out := append([]byte(nil), msg...)
	out[off] ^= 0x10
	if !keepMAC {
		m := mac1Of(responder, out)
		copy(out[offMAC1:], m[:])
	}
	return out
}

func TestInitiatorKey(t *testing.T) {
	g := loadGolden(t)
	responder, initiator, psk := testutil.PrivateKey(t), testutil.PrivateKey(t), testutil.PrivateKey(t)
	live := capture(t, initiator, responder.Public(), nil)
	withPSK := capture(t, initiator, responder.Public(), &psk)
	tests := []struct {
		name string
		ours keys.PrivateKey
		msg  []byte
		want keys.PublicKey
		err  error
	}{
		{"captured now", responder, live, initiator.Public(), nil},
		{"captured now, peer has a preshared key", responder, withPSK, initiator.Public(), nil},
		{"captured once (testdata)", g.Responder, g.Msg, g.Initiator, nil},
		{"another responder's key", testutil.PrivateKey(t), live, keys.PublicKey{}, ErrOtherKey},
		{"truncated", responder, live[:InitiationSize-1], keys.PublicKey{}, ErrNotInitiation},
		{"one byte more", responder, append(append([]byte(nil), live...), 0), keys.PublicKey{}, ErrNotInitiation},
		{"a response's type", responder, append([]byte{2}, live[1:]...), keys.PublicKey{}, ErrNotInitiation},
		{"nonzero reserved byte", responder, tamper(live, 2, responder.Public(), true), keys.PublicKey{}, ErrNotInitiation},
		{"mac1 broken", responder, tamper(live, offMAC1, responder.Public(), true), keys.PublicKey{}, ErrOtherKey},
		{"ephemeral changed", responder, tamper(live, offEphemeral+3, responder.Public(), false), keys.PublicKey{}, ErrUnreadable},
		{"static key changed", responder, tamper(live, offStatic+5, responder.Public(), false), keys.PublicKey{}, ErrUnreadable},
		{"static key's tag changed", responder, tamper(live, offTimestamp-1, responder.Public(), false), keys.PublicKey{}, ErrUnreadable},
		{"timestamp changed", responder, tamper(live, offTimestamp+2, responder.Public(), false), keys.PublicKey{}, ErrUnreadable},
		// mac2 is not covered by mac1 and only matters under load.
		{"mac2 changed", responder, tamper(live, offMAC2+1, responder.Public(), true), initiator.Public(), nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := InitiatorKey(tt.ours, tt.msg)
			if !errors.Is(err, tt.err) {
				t.Fatalf("error %v, want %v", err, tt.err)
			}
			if got != tt.want {
				t.Fatalf("key %s, want %s", got, tt.want)
			}
		})
	}
}

// Whatever the bytes, InitiatorKey returns a key or one of its errors,
// and never a key together with an error.
func FuzzInitiatorKey(f *testing.F) {
	g := loadGolden(f)
	f.Add(g.Msg)
	f.Add(tamper(g.Msg, offStatic, g.Responder.Public(), false))
	f.Add(tamper(g.Msg, offTimestamp, g.Responder.Public(), false))
	f.Add(g.Msg[:100])
	f.Fuzz(func(t *testing.T, msg []byte) {
		// Reseal mac1 so that mutations reach the decryption.
		if IsInitiation(msg) {
			m := mac1Of(g.Responder.Public(), msg)
			copy(msg[offMAC1:], m[:])
		}
		key, err := InitiatorKey(g.Responder, msg)
		switch {
		case err == nil && key.IsZero():
			t.Fatal("no error and no key")
		case err != nil && !key.IsZero():
			t.Fatalf("a key with error %v", err)
		case err != nil && !errors.Is(err, ErrNotInitiation) && !errors.Is(err, ErrOtherKey) && !errors.Is(err, ErrUnreadable):
			t.Fatalf("an error of no kind: %v", err)
		case err == nil && string(msg) != string(g.Msg) && key == g.Initiator && !sameSealed(msg, g.Msg):
			t.Fatalf("a changed message still read as the captured initiator's")
		}
	})
}

// sameSealed: msg differs from the captured one only where nothing is
// authenticated (the sender index and mac2).
func sameSealed(msg, captured []byte) bool {
	return string(msg[:4]) == string(captured[:4]) && string(msg[offEphemeral:offMAC1]) == string(captured[offEphemeral:offMAC1])
}

// What reading one initiation costs: three X25519 (our public key and the
// two shared secrets), a few BLAKE2s and two ChaCha20-Poly1305 opens. The
// gateway bounds how often it pays it (tunnel/strangers.go).
func BenchmarkInitiatorKey(b *testing.B) {
	g := loadGolden(b)
	for b.Loop() {
		if _, err := InitiatorKey(g.Responder, g.Msg); err != nil {
			b.Fatal(err)
		}
	}
}
