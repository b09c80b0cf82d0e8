package tunnel

import (
	"fmt"
	"net/netip"
	"testing"
	"time"

	"golang.zx2c4.com/wireguard/conn"

	"github.com/tunnel-dev/tunnel/keys"
	"github.com/tunnel-dev/tunnel/tunnel/handshake/handshaketest"
)

func endpoint(i int) conn.Endpoint {
	return &conn.StdNetEndpoint{AddrPort: netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 1, byte(i >> 8), byte(i)}), 51820)}
}

// The decryption of refused initiations is bounded: per source, once per
// interval (the key read is reused); in all, strangerDecodesPerSecond;
// the copies kept, maxStrangerSources, however many sources send.
func TestStrangersBounded(t *testing.T) {
	captured := handshaketest.Load(t)
	responder, initiator, msg := captured.Responder, captured.Initiator, captured.Msg
	var s strangers
	s.setKey(responder)
	t0 := time.Now()

	const sources = 3 * maxStrangerSources
	for i := range sources {
		s.seen(msg, endpoint(i))
	}
	if n := len(s.bySource); n > maxStrangerSources {
		t.Fatalf("%d sources remembered, the bound is %d", n, maxStrangerSources)
	}
	var kept []string
	for src := range s.bySource {
		kept = append(kept, src)
	}
	read := 0
	for _, src := range kept[:100] {
		key, ok := s.identify(src, t0)
		if ok {
			read++
			if key != initiator {
				t.Fatalf("read key %s, the initiator is %s", key, initiator)
			}
		}
	}
	if read != strangerDecodesPerSecond {
		t.Fatalf("%d of 100 sources decrypted at one instant, want the budget of %d", read, strangerDecodesPerSecond)
	}
	// A source read once is not decrypted again within the interval, even
	// with a new initiation: its key is reused and no budget spent.
	first := kept[0]
	s.seen(msg, &conn.StdNetEndpoint{AddrPort: netip.MustParseAddrPort(first)})
	if key, ok := s.identify(first, t0.Add(time.Second)); !ok || key != initiator {
		t.Fatalf("the key read a second ago is not reused: %v %s", ok, key)
	}
	// The budget refills with time, and the reuse above spent none of it.
	read = 0
	for _, src := range kept[100:200] {
		if _, ok := s.identify(src, t0.Add(time.Second)); ok {
			read++
		}
	}
	if read != strangerDecodesPerSecond {
		t.Fatalf("%d decrypted a second later, want %d", read, strangerDecodesPerSecond)
	}
}

// The key label is bounded: past maxStrangerKeys, keys count as other.
func TestStrangerKeysBounded(t *testing.T) {
	var s strangers
	for i := range 2 * maxStrangerKeys {
		var k keys.PublicKey
		copy(k[:], fmt.Sprintf("key %d", i))
		s.count(k, true)
	}
	s.count(keys.PublicKey{}, false)
	c := s.counts()
	if len(c) > maxStrangerKeys+2 {
		t.Fatalf("%d series, the bound is %d keys and unread and other", len(c), maxStrangerKeys)
	}
	var total uint64
	for _, n := range c {
		total += n
	}
	if total != 2*maxStrangerKeys+1 || c[strangerUnread] != 1 || c[strangerOther] == 0 {
		t.Fatalf("counts %v: want every refusal counted once", c)
	}
}
