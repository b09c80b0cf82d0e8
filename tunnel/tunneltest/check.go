package tunneltest

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tunnel-dev/tunnel/keys"
	"github.com/tunnel-dev/tunnel/keys/store"
)

// Load reads a store.
func Load(t testing.TB, s store.Store) store.Snapshot {
	t.Helper()
	snap, err := s.Load(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return snap
}

// PublicOf is the public key of the private key in item.
func PublicOf(t testing.TB, snap store.Snapshot, item string) keys.PublicKey {
	t.Helper()
	k, err := keys.ParsePrivateKey(string(snap.Items[item]))
	if err != nil {
		t.Fatalf("%s: %v", item, err)
	}
	return k.Public()
}

// PeerKeys are the keys in a store's peer.<peer>.pub, in order.
func PeerKeys(t testing.TB, snap store.Snapshot, peer string) []keys.PublicKey {
	t.Helper()
	a, n, err := keys.ParsePeerKeys(snap.Items[keys.PeerKeyFile(peer)])
	if err != nil {
		t.Fatalf("peer.%s.pub: %v", peer, err)
	}
	if n != nil {
		return []keys.PublicKey{a, *n}
	}
	return []keys.PublicKey{a}
}

// CheckWorkingKeys asserts that each side has a working key, in the stores
// and in the running gateways: the key each side's store holds is one its
// peer's store accepts, and the key each gateway runs is one its peer's
// gateway has as a peer.
func CheckWorkingKeys(t testing.TB, p *Pair, when string) {
	t.Helper()
	for _, pair := range [][2]*Side{{p.AKS, p.EKS}, {p.EKS, p.AKS}} {
		r, o := pair[0], pair[1]
		held := PublicOf(t, Load(t, r.Store()), keys.PrivateKeyFile)
		accepted := PeerKeys(t, Load(t, o.Store()), r.Name)
		if !slices.Contains(accepted, held) {
			t.Fatalf("%s: %s's store holds %s, but %s's store accepts %v for it", when, r.Name, held.Fingerprint(), o.Name, accepted)
		}
		running := r.PublicKey()
		var listed []string
		ok := false
		for _, ps := range o.Gateway.Status().Peers {
			listed = append(listed, ps.PublicKey)
			ok = ok || ps.PublicKey == running.String()
		}
		if !ok {
			t.Fatalf("%s: %s's gateway runs %s, but %s's gateway lists only %v", when, r.Name, running.Fingerprint(), o.Name, listed)
		}
	}
}

// CheckSettled asserts the end of a rotation of r to key want: no
// next.key, the peer's store accepts exactly want, r's gateway runs it and
// the peer's gateway has it, alone and active.
func CheckSettled(t testing.TB, r, o *Side, want keys.PublicKey) {
	t.Helper()
	rs := Load(t, r.Store())
	if rs.Has(keys.NextKeyFile) {
		t.Fatalf("%s's store still has next.key", r.Name)
	}
	if got := PublicOf(t, rs, keys.PrivateKeyFile); got != want {
		t.Fatalf("%s's private.key is %s, want %s", r.Name, got.Fingerprint(), want.Fingerprint())
	}
	if got := PeerKeys(t, Load(t, o.Store()), r.Name); !slices.Equal(got, []keys.PublicKey{want}) {
		t.Fatalf("%s's peer.%s.pub is %v, want [%s]", o.Name, r.Name, got, want)
	}
	if got := r.PublicKey(); got != want {
		t.Fatalf("%s's gateway runs %s, want %s", r.Name, got.Fingerprint(), want.Fingerprint())
	}
	var listed []string
	for _, ps := range o.Gateway.Status().Peers {
		listed = append(listed, ps.PublicKey+" "+ps.Key)
	}
	if !slices.Equal(listed, []string{want.String() + " active"}) {
		t.Fatalf("%s's gateway lists %v, want only %s active", o.Name, listed, want)
	}
}

// Monitor samples, every 5ms, whether the key each gateway runs is one its
// peer's gateway has as a peer.
type Monitor struct {
	p          *Pair
	stop, done chan struct{}

	mu         sync.Mutex
	samples    int
	violations []string
	count      int
}

// WatchWorkingKeys starts a Monitor; Stop ends it.
func WatchWorkingKeys(p *Pair) *Monitor {
	m := &Monitor{p: p, stop: make(chan struct{}), done: make(chan struct{})}
	go m.run()
	return m
}

func (m *Monitor) run() {
	defer close(m.done)
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-m.stop:
			return
		case <-tick.C:
		}
		var bad []string
		for _, pair := range [][2]*Side{{m.p.AKS, m.p.EKS}, {m.p.EKS, m.p.AKS}} {
			r, o := pair[0], pair[1]
			running := r.PublicKey().String()
			ok := false
			var listed []string
			for _, ps := range o.Gateway.Status().Peers {
				ok = ok || ps.PublicKey == running
				listed = append(listed, ps.PublicKey)
			}
			if !ok {
				bad = append(bad, fmt.Sprintf("%s: %s runs %s, %s has %v", time.Now().Format("15:04:05.000"), r.Name, running, o.Name, listed))
			}
		}
		m.mu.Lock()
		m.samples++
		m.count += len(bad)
		if len(m.violations) < 5 {
			m.violations = append(m.violations, bad...)
		}
		m.mu.Unlock()
	}
}

// Violations is how many samples so far found a side without a working
// key, and the first few of them.
func (m *Monitor) Violations() (n, samples int, first []string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.count, m.samples, slices.Clone(m.violations)
}

// Stop ends the sampling.
func (m *Monitor) Stop() {
	select {
	case <-m.stop:
	default:
		close(m.stop)
	}
	<-m.done
}

// MonitorWorkingKeys watches a pair until the test ends and fails it at
// cleanup if at any sample a side had no working key.
func MonitorWorkingKeys(t testing.TB, p *Pair) {
	t.Helper()
	m := WatchWorkingKeys(p)
	t.Cleanup(func() {
		m.Stop()
		n, samples, first := m.Violations()
		if n > 0 {
			t.Errorf("%d of %d samples found a side without a working key:\n%s", n, samples, strings.Join(first, "\n"))
		} else {
			t.Logf("working keys on both sides at all %d samples, every 5ms", samples)
		}
	})
}
