package netstack

import (
	"context"
	"crypto/rand"
	"crypto/sha256"

	"io"
	"net/netip"
	"testing"
	"time"
)

// levers are the combinations of the stack's performance levers; each must
// carry TCP correctly on its own.
var levers = []struct {
	name string
	opts Options
}{
	{"all", Options{}},
	{"no-gso", Options{NoGSO: true}},
	{"no-gro", Options{NoGRO: true}},
	{"none", Options{NoGSO: true, NoGRO: true}},
	{"verify", Options{VerifyChecksums: true}},
	{"verify-no-gro", Options{VerifyChecksums: true, NoGRO: true}},
}

func leverPair(t testing.TB, o Options) (a, b *Stack) {
	mk := func(self, peer netip.Addr) *Stack {
		o.Addresses = []netip.Addr{self}
		o.Routes = []netip.Prefix{netip.PrefixFrom(peer, 32)}
		o.MTU = 1420
		s, err := New(o)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	}
	a, b = mk(addrA, addrB), mk(addrB, addrA)
	wireTB(t, a, b)
	return a, b
}

// transfer sends data from b to a over TCP to port and returns the hash of
// what a received.
func transfer(t testing.TB, a, b *Stack, data []byte, port uint16) (got [32]byte, n int64) {
	ln, err := b.ListenTCP(netip.AddrPortFrom(addrB, port))
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		_, _ = c.Write(data)
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := a.DialTCP(ctx, netip.AddrPortFrom(addrB, port))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(30 * time.Second))
	h := sha256.New()
	n, err = io.Copy(h, c)
	if err != nil {
		t.Fatal(err)
	}
	copy(got[:], h.Sum(nil))
	return got, n
}

func randomBytes(n int) []byte {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return b
}

func TestLevers(t *testing.T) {
	for _, l := range levers {
		t.Run(l.name, func(t *testing.T) {
			a, b := leverPair(t, l.opts)
			const size = 8 << 20
			data := randomBytes(size)
			got, n := transfer(t, a, b, data, 80)
			if n != size || sha256.Sum256(data) != got {
				t.Fatalf("received %d bytes, hash match %v", n, sha256.Sum256(data) == got)
			}
			// A lever that mangles packets shows as malformed packets or
			// checksum errors. (Retransmissions are no sign: RACK may
			// resend on reordering, and the queue may overflow.)
			for name, s := range map[string]*Stack{"receiver": a, "sender": b} {
				st := s.s.Stats()
				if m := st.IP.MalformedPacketsReceived.Value(); m != 0 {
					t.Errorf("%s: %d malformed packets", name, m)
				}
				if c := st.TCP.ChecksumErrors.Value(); c != 0 {
					t.Errorf("%s: %d checksum errors", name, c)
				}
			}
		})
	}
}

// BenchmarkStackToStack moves TCP between two stacks wired back to back,
// no crypto, once per lever combination: what each lever buys the stack.
func BenchmarkStackToStack(b *testing.B) {
	for _, l := range levers {
		b.Run(l.name, func(b *testing.B) {
			x, y := leverPair(b, l.opts)
			const size = 16 << 20
			data := randomBytes(size)
			b.SetBytes(size)
			b.ResetTimer()
			for i := range b.N {
				if _, n := transfer(b, x, y, data, uint16(1000+i%60000)); n != size {
					b.Fatalf("%d bytes", n)
				}
			}
		})
	}
}
