package rotate

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/tunnel-dev/tunnel/internal/testutil"
	"github.com/tunnel-dev/tunnel/keys"
	"github.com/tunnel-dev/tunnel/keys/store"
)

// allStates enumerates every (x, n, F) over four keys: x this side's key,
// n its next key or none, F one or two distinct keys the peer accepts.
func allStates(each func(x string, n *string, f []string)) {
	u := []string{"A", "B", "C", "D"}
	var fs [][]string
	for _, a := range u {
		fs = append(fs, []string{a})
		for _, b := range u {
			if b != a {
				fs = append(fs, []string{a, b})
			}
		}
	}
	for _, x := range u {
		for _, f := range fs {
			each(x, nil, f)
			for _, n := range u {
				each(x, &n, f)
			}
		}
	}
}

// The protocol, checked over every state the two stores can be in: each
// state is either recovered, step by step, to a settled one, or refused
// (exactly when the peer accepts neither of this side's keys: the tunnel
// is down already and rotate will not guess). On the way, each step writes
// one store, and no step can leave the sides without a working key, even
// while a gateway still runs what the store held before the write: a step
// that changes the peer's accepted keys keeps this side's key in both the
// old and the new set, and a switch moves between two keys the peer
// accepts (its gateway confirmed the new one before the write).
func TestEveryStateRecoversKeepingAWorkingKey(t *testing.T) {
	states, refused := 0, 0
	allStates(func(x string, n *string, f []string) {
		name := fmt.Sprintf("x=%s n=%v F=%v", x, deref(n), f)
		st, err := classify(x, n, f)
		accepted := slices.Contains(f, x) || n != nil && slices.Contains(f, *n)
		if err != nil {
			refused++
			if accepted || !errors.Is(err, ErrNoWorkingKey) {
				t.Errorf("%s: refused (%v), but the peer accepts one of this side's keys", name, err)
			}
			return
		}
		if !accepted {
			t.Errorf("%s: classified %s, but the peer accepts neither key", name, st)
		}
		states++
		for _, resume := range []bool{false, true} {
			seq := simulate(x, n, f, "NEW", resume)
			prev := model[string]{X: x, N: n, F: f}
			for i, m := range seq {
				what := fmt.Sprintf("%s resume=%v, step %d (%s)", name, resume, i, m.Step)
				keyChanged := m.X != prev.X || deref(m.N) != deref(prev.N)
				fChanged := !slices.Equal(m.F, prev.F)
				if keyChanged && fChanged {
					t.Errorf("%s: writes both stores at once", what)
				}
				if fChanged && (!slices.Contains(prev.F, prev.X) || !slices.Contains(m.F, m.X)) {
					t.Errorf("%s: F %v -> %v while this side holds %s", what, prev.F, m.F, m.X)
				}
				if m.X != prev.X && (!slices.Contains(m.F, m.X) || !slices.Contains(m.F, prev.X) && !(i == 0 && st == NextAccepted)) {
					t.Errorf("%s: switched %s -> %s with F %v", what, prev.X, m.X, m.F)
				}
				if i > 0 && !slices.Contains(m.F, m.X) {
					t.Errorf("%s: this side's key %s is not in F %v", what, m.X, m.F)
				}
				prev = m
			}
			end, err := classify(prev.X, prev.N, prev.F)
			if err != nil || end != Settled {
				t.Errorf("%s resume=%v: ends %v %v after %v", name, resume, end, err, steps(seq))
			}
			if !resume && st == Settled && (prev.X != "NEW" || len(seq) != 4) {
				t.Errorf("%s: a fresh rotation ended with key %s after %v", name, prev.X, steps(seq))
			}
			if resume && st == Settled && len(seq) != 0 {
				t.Errorf("%s: --resume started a rotation: %v", name, steps(seq))
			}
		}
	})
	t.Logf("%d states recovered to settled, %d refused", states, refused)
}

func deref(p *string) string {
	if p == nil {
		return "-"
	}
	return *p
}

func steps(seq []model[string]) []Step {
	var out []Step
	for _, m := range seq {
		out = append(out, m.Step)
	}
	return out
}

func TestStepsFromEachState(t *testing.T) {
	a, b, c := "A", "B", "C"
	for _, tc := range []struct {
		x    string
		n    *string
		f    []string
		want string
	}{
		{a, nil, []string{a}, "prepare stage switch revoke"},
		{a, &b, []string{a}, "stage switch revoke"},
		{a, &b, []string{a, b}, "switch revoke"},
		{b, nil, []string{a, b}, "revoke"},
		{b, &c, []string{a, b}, "revoke stage switch revoke"},
		{b, &b, []string{a, b}, "tidy revoke"},
		{a, nil, []string{a, c}, "unstage prepare stage switch revoke"},
		{a, &b, []string{a, c}, "unstage stage switch revoke"},
		{a, &b, []string{b}, "switch"},
		{a, &b, []string{c, b}, "switch revoke"},
	} {
		var got []string
		for _, s := range steps(simulate(tc.x, tc.n, tc.f, "NEW", false)) {
			got = append(got, string(s))
		}
		if strings.Join(got, " ") != tc.want {
			t.Errorf("x=%s n=%s F=%v: %v, want %s", tc.x, deref(tc.n), tc.f, got, tc.want)
		}
	}
}

func snap(items map[string]string) store.Snapshot {
	s := store.Snapshot{Items: map[string][]byte{}}
	for k, v := range items {
		s.Items[k] = []byte(v)
	}
	return s
}

func TestClassify(t *testing.T) {
	x, n, o := testutil.PrivateKey(t), testutil.PrivateKey(t), testutil.PrivateKey(t)
	priv := func(k keys.PrivateKey) string { return k.Base64() + "\n" }
	pub := func(ks ...keys.PrivateKey) string {
		var s []keys.PublicKey
		for _, k := range ks {
			s = append(s, k.Public())
		}
		return string(keys.FormatPeerKeys(s...))
	}
	for _, tc := range []struct {
		name      string
		this      map[string]string
		peer      map[string]string
		peerName  string
		want      State
		wantErr   error
		errSubstr string
	}{
		{"settled", map[string]string{"private.key": priv(x)}, map[string]string{"peer.aks.pub": pub(x), "peer.other.pub": pub(o)}, "", Settled, nil, ""},
		{"prepared", map[string]string{"private.key": priv(x), "next.key": priv(n)}, map[string]string{"peer.aks.pub": pub(x)}, "", Prepared, nil, ""},
		{"staged", map[string]string{"private.key": priv(x), "next.key": priv(n)}, map[string]string{"peer.aks.pub": pub(x, n)}, "aks", Staged, nil, ""},
		{"switched", map[string]string{"private.key": priv(n)}, map[string]string{"peer.aks.pub": "# comment\n" + pub(x, n)}, "", Switched, nil, ""},
		{"stray next", map[string]string{"private.key": priv(n), "next.key": priv(n)}, map[string]string{"peer.aks.pub": pub(x, n)}, "", StrayNext, nil, ""},
		{"stale successor", map[string]string{"private.key": priv(x)}, map[string]string{"peer.aks.pub": pub(x, o)}, "", StaleSuccessor, nil, ""},
		{"next accepted", map[string]string{"private.key": priv(x), "next.key": priv(n)}, map[string]string{"peer.aks.pub": pub(n)}, "", NextAccepted, nil, ""},
		{"no private key", map[string]string{}, map[string]string{"peer.aks.pub": pub(x)}, "", 0, nil, "has no private.key"},
		{"zero private key", map[string]string{"private.key": strings.Repeat("A", 43) + "="}, map[string]string{"peer.aks.pub": pub(x)}, "", 0, ErrBadKey, "all zeros"},
		{"short private key", map[string]string{"private.key": "AAAA"}, map[string]string{"peer.aks.pub": pub(x)}, "", 0, ErrBadKey, "decodes to 3 bytes"},
		{"private key not base64", map[string]string{"private.key": "not a key!"}, map[string]string{"peer.aks.pub": pub(x)}, "", 0, ErrBadKey, "not base64"},
		{"bad next key", map[string]string{"private.key": priv(x), "next.key": "AAAA"}, map[string]string{"peer.aks.pub": pub(x)}, "", 0, ErrBadKey, "next.key"},
		{"bad peer file", map[string]string{"private.key": priv(x)}, map[string]string{"peer.aks.pub": "nope\n"}, "aks", 0, ErrBadKey, "peer.aks.pub"},
		{"peer file missing", map[string]string{"private.key": priv(x)}, map[string]string{"peer.eks.pub": pub(o)}, "aks", 0, nil, "has no peer.aks.pub"},
		{"not found by key", map[string]string{"private.key": priv(x)}, map[string]string{"peer.eks.pub": pub(o)}, "", 0, ErrPeerName, "--peer-name"},
		{"ambiguous", map[string]string{"private.key": priv(x)}, map[string]string{"peer.a.pub": pub(x), "peer.b.pub": pub(x)}, "", 0, ErrPeerName, "a, b"},
		{"no working key", map[string]string{"private.key": priv(x)}, map[string]string{"peer.aks.pub": pub(o)}, "aks", 0, ErrNoWorkingKey, x.Public().String()},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sit, err := Classify(snap(tc.this), snap(tc.peer), "dir:/this", "dir:/peer", tc.peerName)
			if tc.errSubstr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.errSubstr) || tc.wantErr != nil && !errors.Is(err, tc.wantErr) {
					t.Fatalf("err %v, want %v with %q", err, tc.wantErr, tc.errSubstr)
				}
				for _, secret := range []string{x.Base64(), n.Base64()} {
					if strings.Contains(err.Error(), secret) {
						t.Fatalf("the error shows a private key: %v", err)
					}
				}
				return
			}
			if err != nil || sit.State != tc.want || sit.PeerName != "aks" {
				t.Fatalf("%+v %v, want %s for aks", sit, err, tc.want)
			}
		})
	}
}

// Whatever the stores hold, Classify neither panics nor repeats a private
// key in an error, and what it classifies has a plan.
func FuzzClassify(f *testing.F) {
	x, n := testutil.PrivateKey(f), testutil.PrivateKey(f)
	f.Add(x.Base64(), n.Base64(), x.Public().String()+"\n"+n.Public().String()+"\n", "")
	f.Add(x.Base64(), "", x.Public().String(), "aks")
	f.Add(strings.Repeat("A", 44), "AAAA", "#\n\n", "aks")
	f.Fuzz(func(t *testing.T, priv, next, peerFile, peerName string) {
		this := map[string]string{"private.key": priv}
		if next != "" {
			this["next.key"] = next
		}
		sit, err := Classify(snap(this), snap(map[string]string{"peer.aks.pub": peerFile}), "dir:/a", "dir:/b", peerName)
		if err != nil {
			for _, secret := range []string{priv, next} {
				// (A peer key file is public: its error may quote it,
				// even when the fuzzer made it the same string.)
				if s := strings.TrimSpace(secret); len(s) >= 16 && strings.Contains(err.Error(), s) && !strings.Contains(peerFile, s) {
					t.Fatalf("the error repeats a private key: %v", err)
				}
			}
			return
		}
		Plan{Situation: sit, Steps: planFrom(sit, false, "dir:/a", "dir:/b")}.Print(&strings.Builder{})
	})
}

func TestParseStep(t *testing.T) {
	for _, s := range Steps() {
		if got, err := ParseStep(string(s)); err != nil || got != s {
			t.Errorf("%s: %v %v", s, got, err)
		}
	}
	if _, err := ParseStep("swtich"); err == nil || !strings.Contains(err.Error(), "prepare, stage, switch, revoke") {
		t.Errorf("unknown step: %v", err)
	}
}
