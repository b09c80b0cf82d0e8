package rotate

import (
	"slices"
	"testing"

	"github.com/tunnel-dev/tunnel/keys"
)

// With several peer stores the rotation's state is that of the store
// furthest behind, and each step writes exactly the stores that need it:
// an interrupted stage or revoke, resumed, finishes the rest.
func TestCombinePeerStates(t *testing.T) {
	var x, n, o keys.PublicKey
	x[0], n[0], o[0] = 1, 2, 3
	sit := func(st State, f ...keys.PublicKey) Situation {
		return Situation{State: st, PeerName: "aks-a", Current: x, Accepted: f, store: "dir:" + st.String()}
	}
	tests := []struct {
		name   string
		in     []Situation
		want   State
		writes map[Step][]int // the peer stores each step writes
	}{
		{"all settled", []Situation{sit(Settled, x), sit(Settled, x)}, Settled, nil},
		{"staged at one", []Situation{sit(Staged, x, n), sit(Prepared, x)}, Prepared, map[Step][]int{Stage: {1}}},
		{"staged at both", []Situation{sit(Staged, x, n), sit(Staged, x, n)}, Staged, map[Step][]int{Stage: nil}},
		{"revoked at one", []Situation{sit(Settled, x), sit(Switched, o, x)}, Switched, map[Step][]int{Revoke: {1}}},
		{"stale successor at one", []Situation{sit(Prepared, x), sit(StaleSuccessor, x, o)}, StaleSuccessor, map[Step][]int{Unstage: {1}}},
		{"next accepted at one", []Situation{sit(Staged, x, n), sit(NextAccepted, n)}, NextAccepted, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := combine(tt.in, "stores")
			if err != nil {
				t.Fatal(err)
			}
			if got.State != tt.want || len(got.Peers) != len(tt.in) {
				t.Fatalf("state %s with %d peers, want %s with %d", got.State, len(got.Peers), tt.want, len(tt.in))
			}
			for step, want := range tt.writes {
				var w []int
				for i := range got.Peers {
					if got.peerNeeds(i, step) {
						w = append(w, i)
					}
				}
				if !slices.Equal(w, want) {
					t.Errorf("%s writes peer stores %v, want %v", step, w, want)
				}
			}
		})
	}
	a, b := sit(Settled, x), sit(Settled, x)
	b.PeerName = "aks"
	if _, err := combine([]Situation{a, b}, "stores"); err == nil {
		t.Error("two stores naming this side differently were accepted")
	}
}
