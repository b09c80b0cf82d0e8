package tunneltest

import (
	"bytes"
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tunnel-dev/tunnel/internal/kubelet"
	"github.com/tunnel-dev/tunnel/internal/pinger"
	"github.com/tunnel-dev/tunnel/internal/testutil"
	"github.com/tunnel-dev/tunnel/keys"
	"github.com/tunnel-dev/tunnel/keys/rotate"
	"github.com/tunnel-dev/tunnel/keys/store"
)

// kubeletLayout publishes eks's key store as a mounted Secret is laid out,
// and leaves aks's a plain directory, so that every test covers both.
func kubeletLayout(t testing.TB, side, dir string, items map[string][]byte) {
	t.Helper()
	if side == "eks" {
		(&kubelet.Volume{Dir: dir, Mode: 0o400}).Publish(t, items)
		return
	}
	if _, err := store.NewDir(dir).Write(context.Background(), "", store.Change{Set: items}); err != nil {
		t.Fatal(err)
	}
}

func startPair(t *testing.T) *Pair {
	t.Helper()
	return StartPair(t, Options{Layout: kubeletLayout})
}

// rotation rotates r's key, with o as the peer, through both gateways'
// admin URLs.
func rotation(t *testing.T, r, o *Side, out *bytes.Buffer) *rotate.Rotation {
	t.Helper()
	return &rotate.Rotation{
		This:    rotate.Side{Store: r.Store(), Status: httpStatus(t, r.AdminURL())},
		Peer:    rotate.Side{Store: o.Store(), Status: httpStatus(t, o.AdminURL())},
		Timeout: 20 * time.Second,
		Poll:    50 * time.Millisecond,
		Out:     out,
	}
}

func httpStatus(t *testing.T, u string) *rotate.HTTPStatus {
	t.Helper()
	pu, err := rotate.ParseStatusURL(u)
	if err != nil {
		t.Fatal(err)
	}
	return &rotate.HTTPStatus{URL: pu}
}

func load(t testing.TB, s store.Store) store.Snapshot { return Load(t, s) }

func privateOf(t testing.TB, snap store.Snapshot, item string) keys.PublicKey {
	return PublicOf(t, snap, item)
}

func checkInvariant(t *testing.T, p *Pair, when string) {
	CheckWorkingKeys(t, p, when)
}

func settled(t *testing.T, r, o *Side, want keys.PublicKey) {
	CheckSettled(t, r, o, want)
}

// Rotating aks, then eks, while datagrams flow through the tunnel every
// 5ms: each rotation takes the four steps, traffic resumes within a bound,
// and afterwards a gateway holding eks's old key gets no handshake.
func TestRotateBothSidesUnderTraffic(t *testing.T) {
	p := startPair(t)
	ping := pinger.Start(t, p.Forward(t), 5*time.Millisecond)
	MonitorWorkingKeys(t, p)
	ping.Flowing(t, 10*time.Second, 20, "before rotating")
	ping.ResetGap()

	var gaps []time.Duration
	var oldEKS keys.PrivateKey
	for _, pair := range [][2]*Side{{p.AKS, p.EKS}, {p.EKS, p.AKS}} {
		r, o := pair[0], pair[1]
		before := r.PublicKey()
		if r.Name == "eks" {
			k, err := keys.ParsePrivateKey(string(load(t, r.Store()).Items[keys.PrivateKeyFile]))
			if err != nil {
				t.Fatal(err)
			}
			oldEKS = k
		}
		var out bytes.Buffer
		res, err := rotation(t, r, o, &out).Run(context.Background())
		if err != nil {
			t.Fatalf("rotating %s: %v\n%s", r.Name, err, out.String())
		}
		t.Logf("rotating %s:\n%s", r.Name, out.String())
		if want := []rotate.Step{rotate.Prepare, rotate.Stage, rotate.Switch, rotate.Revoke}; !slices.Equal(res.Steps, want) {
			t.Fatalf("steps %v, want %v", res.Steps, want)
		}
		if res.Key == before || res.State != rotate.Settled || res.Stopped {
			t.Fatalf("result %+v (key before %s)", res, before.Fingerprint())
		}
		for _, line := range []string{"prepare: ", "stage: ", "switch: ", "revoke: ", "done: " + r.Name + "'s public key is " + res.Key.String()} {
			if !strings.Contains(out.String(), line) {
				t.Errorf("progress lacks %q:\n%s", line, out.String())
			}
		}
		settled(t, r, o, res.Key)
		ping.Flowing(t, 10*time.Second, 20, "after rotating "+r.Name)
		gaps = append(gaps, ping.Gap())
		ping.ResetGap()
	}
	ping.Halt()
	t.Logf("longest silence with a datagram every 5ms: rotating aks %v, eks %v (%d sent, %d echoed)", gaps[0], gaps[1], ping.Sent.Load(), ping.Got.Load())
	for i, g := range gaps {
		if g > 3*time.Second {
			t.Errorf("rotation %d: traffic stopped for %v", i, g)
		}
	}

	// eks's old key is refused: a gateway holding it gets no handshake.
	refused := p.AKS.Gateway.Status().WireGuard.HandshakeRefused
	old := p.Stranger(t, oldEKS)
	testutil.Eventually(t, 10*time.Second, "aks to refuse the old key", func() bool {
		return p.AKS.Gateway.Status().WireGuard.HandshakeRefused > refused
	})
	for _, ps := range old.Status().Peers {
		if !ps.LastHandshake.IsZero() {
			t.Fatalf("eks's revoked key completed a handshake: %+v", ps)
		}
	}
}

// A rotation stopped after each step, then run again, ends where an
// uninterrupted one does, with the key prepared by the first run; at every
// stop both sides have a working key and traffic flows.
func TestRotateStoppedAfterEachStep(t *testing.T) {
	p := startPair(t)
	ping := pinger.Start(t, p.Forward(t), 10*time.Millisecond)
	ping.Flowing(t, 10*time.Second, 10, "before rotating")
	MonitorWorkingKeys(t, p)
	steps := []rotate.Step{rotate.Prepare, rotate.Stage, rotate.Switch, rotate.Revoke}
	for i, stop := range steps {
		r, o := p.AKS, p.EKS
		if i%2 == 1 {
			r, o = p.EKS, p.AKS
		}
		var out bytes.Buffer
		rot := rotation(t, r, o, &out)
		rot.StopAfter = stop
		res, err := rot.Run(context.Background())
		if err != nil {
			t.Fatalf("stop after %s: %v\n%s", stop, err, out.String())
		}
		if !res.Stopped || res.Steps[len(res.Steps)-1] != stop || !strings.Contains(out.String(), "stopped after "+string(stop)) {
			t.Fatalf("stop after %s: %+v\n%s", stop, res, out.String())
		}
		checkInvariant(t, p, "stopped after "+string(stop))
		ping.Flowing(t, 10*time.Second, 10, "stopped after "+string(stop))

		// The key the rotation will end with is fixed once prepared.
		var want keys.PublicKey
		if snap := load(t, r.Store()); snap.Has(keys.NextKeyFile) {
			want = privateOf(t, snap, keys.NextKeyFile)
		} else {
			want = privateOf(t, snap, keys.PrivateKeyFile)
		}
		out.Reset()
		rot.StopAfter = ""
		if stop == rotate.Revoke {
			rot.Resume = true // the rotation is complete: only confirm it
		}
		res2, err := rot.Run(context.Background())
		if err != nil {
			t.Fatalf("resuming after %s: %v\n%s", stop, err, out.String())
		}
		if wantSteps := steps[i+1:]; !slices.Equal(res2.Steps, wantSteps) {
			t.Fatalf("resuming after %s took %v, want %v\n%s", stop, res2.Steps, wantSteps, out.String())
		}
		if res2.Key != want {
			t.Fatalf("resuming after %s ended with %s, want the prepared key %s", stop, res2.Key.Fingerprint(), want.Fingerprint())
		}
		settled(t, r, o, want)
		checkInvariant(t, p, "resumed after "+string(stop))
		ping.Flowing(t, 10*time.Second, 10, "resumed after "+string(stop))
	}
}
