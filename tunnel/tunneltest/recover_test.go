package tunneltest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tunnel-dev/tunnel/internal/pinger"
	"github.com/tunnel-dev/tunnel/internal/testutil"
	"github.com/tunnel-dev/tunnel/keys"
	"github.com/tunnel-dev/tunnel/keys/rotate"
	"github.com/tunnel-dev/tunnel/keys/store"
	"github.com/tunnel-dev/tunnel/tunnel"
)

// set writes items into a store as an operator (or a crash) would have.
func set(t *testing.T, s store.Store, items map[string][]byte, del ...string) {
	t.Helper()
	if _, err := store.Update(context.Background(), s, func(store.Snapshot) (store.Change, error) {
		return store.Change{Set: items, Delete: del}, nil
	}); err != nil {
		t.Fatal(err)
	}
}

func lists(g *Side, k keys.PublicKey) bool {
	for _, ps := range g.Gateway.Status().Peers {
		if ps.PublicKey == k.String() {
			return true
		}
	}
	return false
}

// States off the happy path, each made as an interruption, a lost file or
// an operator would leave it, and each recovered by a plain run to a
// settled rotation, traffic flowing at the end.
func TestRecoveries(t *testing.T) {
	for _, tc := range []struct {
		name string
		// make puts the stores into the state; it returns the key the
		// rotation must end with (zero: any new key).
		make      func(t *testing.T, p *Pair) keys.PublicKey
		wantSteps []rotate.Step
		// broken: the state made has no working key (so the monitor
		// of working keys is not run)
		broken bool
	}{
		{"peer stages a successor nobody holds", func(t *testing.T, p *Pair) keys.PublicKey {
			stray := testutil.PrivateKey(t).Public()
			set(t, p.EKS.Store(), map[string][]byte{"peer.aks.pub": keys.FormatPeerKeys(p.AKS.PublicKey(), stray)})
			testutil.Eventually(t, 5*time.Second, "eks to stage the stray key", func() bool { return lists(p.EKS, stray) })
			return keys.PublicKey{}
		}, []rotate.Step{rotate.Unstage, rotate.Prepare, rotate.Stage, rotate.Switch, rotate.Revoke}, false},

		{"next.key replaced after staging", func(t *testing.T, p *Pair) keys.PublicKey {
			stray, next := testutil.PrivateKey(t).Public(), testutil.PrivateKey(t)
			set(t, p.EKS.Store(), map[string][]byte{"peer.aks.pub": keys.FormatPeerKeys(p.AKS.PublicKey(), stray)})
			set(t, p.AKS.Store(), map[string][]byte{keys.NextKeyFile: []byte(next.Base64())})
			testutil.Eventually(t, 5*time.Second, "eks to stage the stray key", func() bool { return lists(p.EKS, stray) })
			return next.Public()
		}, []rotate.Step{rotate.Unstage, rotate.Stage, rotate.Switch, rotate.Revoke}, false},

		{"switch interrupted between writing private.key and deleting next.key", func(t *testing.T, p *Pair) keys.PublicKey {
			var out bytes.Buffer
			rot := rotation(t, p.AKS, p.EKS, &out)
			rot.StopAfter = rotate.Stage
			if _, err := rot.Run(context.Background()); err != nil {
				t.Fatalf("%v\n%s", err, out.String())
			}
			next := load(t, p.AKS.Store()).Items[keys.NextKeyFile]
			set(t, p.AKS.Store(), map[string][]byte{keys.PrivateKeyFile: next})
			k, err := keys.ParsePrivateKey(string(next))
			if err != nil {
				t.Fatal(err)
			}
			return k.Public()
		}, []rotate.Step{rotate.Tidy, rotate.Revoke}, false},

		{"peer accepts only the next key", func(t *testing.T, p *Pair) keys.PublicKey {
			// The tunnel is broken here, and the monitor the other tests
			// rely on sees it.
			mon := WatchWorkingKeys(p)
			defer mon.Stop()
			next := testutil.PrivateKey(t)
			set(t, p.AKS.Store(), map[string][]byte{keys.NextKeyFile: []byte(next.Base64())})
			set(t, p.EKS.Store(), map[string][]byte{"peer.aks.pub": keys.FormatPeerKeys(next.Public())})
			testutil.Eventually(t, 5*time.Second, "the monitor to see aks without a working key", func() bool { n, _, _ := mon.Violations(); return n > 0 })
			testutil.Eventually(t, 5*time.Second, "eks to accept only the next key", func() bool { return lists(p.EKS, next.Public()) && !lists(p.EKS, p.AKS.PublicKey()) })
			return next.Public()
		}, []rotate.Step{rotate.Switch}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := startPair(t)
			ping := pinger.Start(t, p.Forward(t), 10*time.Millisecond)
			ping.Flowing(t, 10*time.Second, 5, "before")
			if !tc.broken {
				MonitorWorkingKeys(t, p)
			}
			want := tc.make(t, p)
			var out bytes.Buffer
			res, err := rotation(t, p.AKS, p.EKS, &out).Run(context.Background())
			if err != nil {
				t.Fatalf("%v\n%s", err, out.String())
			}
			t.Logf("\n%s", out.String())
			if !slices.Equal(res.Steps, tc.wantSteps) {
				t.Fatalf("steps %v, want %v", res.Steps, tc.wantSteps)
			}
			if !want.IsZero() && res.Key != want {
				t.Fatalf("ended with %s, want %s", res.Key.Fingerprint(), want.Fingerprint())
			}
			settled(t, p.AKS, p.EKS, res.Key)
			checkInvariant(t, p, "recovered")
			ping.Flowing(t, 10*time.Second, 10, "after the recovery")
		})
	}
}

// A peer that accepts neither of this side's keys: rotate says so, names
// the key to put back, and writes nothing. --resume on settled stores
// writes nothing either.
func TestRefusesWithoutAWorkingKey(t *testing.T) {
	p := startPair(t)
	var out bytes.Buffer
	rot := rotation(t, p.AKS, p.EKS, &out)
	rot.Resume = true
	r, err := rot.Run(context.Background())
	if err != nil || len(r.Steps) != 0 || !strings.Contains(out.String(), "nothing to finish") {
		t.Fatalf("--resume when settled: %+v %v\n%s", r, err, out.String())
	}

	aks := p.AKS.PublicKey()
	set(t, p.EKS.Store(), map[string][]byte{"peer.aks.pub": keys.FormatPeerKeys(testutil.PrivateKey(t).Public())})
	before := []store.Version{load(t, p.AKS.Store()).Version, load(t, p.EKS.Store()).Version}
	rot = rotation(t, p.AKS, p.EKS, &out)
	rot.PeerName = "aks"
	_, err = rot.Run(context.Background())
	if !errors.Is(err, rotate.ErrNoWorkingKey) || !strings.Contains(err.Error(), aks.String()) || !strings.Contains(err.Error(), "peer.aks.pub") {
		t.Fatalf("err %v", err)
	}
	if after := []store.Version{load(t, p.AKS.Store()).Version, load(t, p.EKS.Store()).Version}; !slices.Equal(before, after) {
		t.Fatal("a refused rotation wrote")
	}
}

// Two rotations of the same side racing: every write is a compare-and-swap
// re-checked against what it read, so neither can undo the other's step;
// both finish, and the stores end settled with working keys.
func TestConcurrentRotations(t *testing.T) {
	p := startPair(t)
	ping := pinger.Start(t, p.Forward(t), 10*time.Millisecond)
	ping.Flowing(t, 10*time.Second, 5, "before")
	var wg sync.WaitGroup
	var outs [2]bytes.Buffer
	var errs [2]error
	for i := range 2 {
		wg.Go(func() {
			_, errs[i] = rotation(t, p.AKS, p.EKS, &outs[i]).Run(context.Background())
		})
	}
	wg.Wait()
	for i := range 2 {
		if errs[i] != nil {
			t.Fatalf("run %d: %v\n%s", i, errs[i], outs[i].String())
		}
	}
	t.Logf("run 0:\n%s\nrun 1:\n%s", outs[0].String(), outs[1].String())
	settled(t, p.AKS, p.EKS, privateOf(t, load(t, p.AKS.Store()), keys.PrivateKeyFile))
	checkInvariant(t, p, "after two racing rotations")
	began := time.Now()
	ping.Flowing(t, 10*time.Second, 10, "after two racing rotations")
	t.Logf("traffic flowing %v after both returned; longest silence %v", time.Since(began), ping.Gap())
}

// gatewayStatus reads a gateway's status in process.
type gatewayStatus struct{ g *tunnel.Gateway }

func (s gatewayStatus) Statuses(context.Context) ([]rotate.GatewayStatus, error) {
	b, err := json.Marshal(s.g.Status())
	if err != nil {
		return nil, err
	}
	st, err := rotate.DecodeStatus(bytes.NewReader(b))
	return []rotate.GatewayStatus{st}, err
}
func (s gatewayStatus) String() string { return "the stranger's gateway" }

// A wait that times out names the step, the gateway and what it expected,
// and what it saw; the stores are left where running again resumes. Here
// --peer-status points at the wrong gateway (one that knows aks's key but
// never reads eks's store), so the stage is never confirmed.
func TestTimeoutNamesTheStep(t *testing.T) {
	p := startPair(t)
	// Traffic, so that aks handshakes as soon as it switches (without it,
	// eks's next handshake retry comes up to 5s later).
	ping := pinger.Start(t, p.Forward(t), 10*time.Millisecond)
	ping.Flowing(t, 10*time.Second, 5, "before")
	wrong := p.Stranger(t, testutil.PrivateKey(t))
	var out bytes.Buffer
	rot := rotation(t, p.AKS, p.EKS, &out)
	rot.Peer.Status = gatewayStatus{wrong}
	rot.Timeout = time.Second
	began := time.Now()
	_, err := rot.Run(context.Background())
	if err == nil {
		t.Fatalf("the rotation was confirmed by the wrong gateway:\n%s", out.String())
	}
	for _, want := range []string{"stage: timed out after 1s waiting for the peer's gateway to list", "as aks's successor", "last seen: this side's gateway runs", "the peer's gateway holds", "run the same command again to resume"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("the error lacks %q: %v", want, err)
		}
	}
	if d := time.Since(began); d > 5*time.Second {
		t.Errorf("a 1s timeout took %v", d)
	}
	CheckWorkingKeys(t, p, "after the timeout")
	out.Reset()
	res, err := rotation(t, p.AKS, p.EKS, &out).Run(context.Background())
	if err != nil || !slices.Equal(res.Steps, []rotate.Step{rotate.Switch, rotate.Revoke}) {
		t.Fatalf("resuming: %v %v\n%s", res.Steps, err, out.String())
	}
	settled(t, p.AKS, p.EKS, res.Key)
}

// Status addresses swapped: refused before anything is written, saying
// which flag looks wrong.
func TestSwappedStatus(t *testing.T) {
	p := startPair(t)
	before := []store.Version{load(t, p.AKS.Store()).Version, load(t, p.EKS.Store()).Version}
	var out bytes.Buffer
	rot := rotation(t, p.AKS, p.EKS, &out)
	rot.This.Status, rot.Peer.Status = rot.Peer.Status, rot.This.Status
	_, err := rot.Run(context.Background())
	if err == nil || !strings.Contains(err.Error(), "is --status the gateway that reads --store") {
		t.Fatalf("swapped statuses: %v", err)
	}
	if after := []store.Version{load(t, p.AKS.Store()).Version, load(t, p.EKS.Store()).Version}; !slices.Equal(before, after) {
		t.Fatal("wrote with swapped statuses")
	}
}
