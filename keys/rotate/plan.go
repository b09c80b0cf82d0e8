package rotate

import (
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/tunnel-dev/tunnel/keys"
)

// next is the step that follows a state. rotated says whether this run has
// already replaced the key (switched, revoked or tidied): a settled state
// is then the end, as it is at once when resume is set. A settled state
// otherwise starts a rotation.
func next(s State, rotated, resume bool) (Step, bool) {
	switch s {
	case Settled:
		if rotated || resume {
			return "", true
		}
		return Prepare, false
	case Prepared:
		return Stage, false
	case Staged, NextAccepted:
		return Switch, false
	case Switched:
		return Revoke, false
	case StrayNext:
		return Tidy, false
	case StaleSuccessor:
		return Unstage, false
	}
	return "", true
}

// rotatesKey reports whether a step completes a change of key.
func rotatesKey(s Step) bool { return s == Switch || s == Revoke || s == Tidy }

// maxSteps bounds a run: the longest path (unstage, then a whole
// rotation) is five steps; anything longer means the stores keep changing
// under us.
const maxSteps = 10

// PlannedStep is a step a rotation will take.
type PlannedStep struct {
	Step  Step
	Store string // the store it writes
	Write string // what it writes (item names and public keys only)
	Wait  string // what it waits for the gateways to show
}

// Plan is what a run would do from a situation, assuming each step
// succeeds.
type Plan struct {
	Situation Situation
	Steps     []PlannedStep
}

// Print writes the plan, one line per step.
func (p Plan) Print(w io.Writer) {
	sit := p.Situation
	fmt.Fprintf(w, "state: %s (%s)\n", sit.State, describe(sit))
	if len(p.Steps) == 0 {
		fmt.Fprintln(w, "plan: nothing to write; wait until both gateways run what the stores hold")
		return
	}
	fmt.Fprintln(w, "plan:")
	for _, s := range p.Steps {
		fmt.Fprintf(w, "  %-8s %s: %s", s.Step, s.Store, s.Write)
		if s.Wait != "" {
			fmt.Fprintf(w, "; then wait for %s", s.Wait)
		}
		fmt.Fprintln(w)
	}
}

// describe says what the stores hold, in public keys.
func describe(sit Situation) string {
	s := fmt.Sprintf("this side's key %s", sit.Current.Fingerprint())
	if sit.Next != nil {
		s += fmt.Sprintf(", next key %s", sit.Next.Fingerprint())
	}
	return s + fmt.Sprintf("; the peer accepts %s for %s", fingerprints(sit.Accepted), sit.PeerName)
}

// model is the stores' state on labels: this side's key x, its next key
// n, and the keys F the peer accepts for it.
type model[K comparable] struct {
	Step Step // the step that led here
	X    K
	N    *K
	F    []K
}

// simulate runs the steps from (x, n, F) on labels, as Run would if every
// step succeeded: fresh is the label of the key prepare generates. It
// returns each state after each step. The tests check every transition
// of every state with it.
func simulate[K comparable](x K, n *K, f []K, fresh K, resume bool) []model[K] {
	var out []model[K]
	rotated := false
	for range maxSteps {
		st, err := classify(x, n, f)
		if err != nil {
			break
		}
		step, done := next(st, rotated, resume)
		if done {
			break
		}
		switch step {
		case Prepare:
			k := fresh
			n = &k
		case Stage:
			f = []K{x, *n}
		case Switch:
			x, n = *n, nil
		case Revoke, Unstage:
			f = []K{x}
		case Tidy:
			n = nil
		}
		rotated = rotated || rotatesKey(step)
		out = append(out, model[K]{Step: step, X: x, N: n, F: slices.Clone(f)})
	}
	return out
}

// planFrom describes a run from sit, simulated on fingerprints ("a new
// key" for the one prepare will generate).
func planFrom(sit Situation, resume bool, thisAddr, peerAddr string) []PlannedStep {
	const fresh = "a new key"
	x := sit.Current.Fingerprint()
	var n *string
	if sit.Next != nil {
		s := sit.Next.Fingerprint()
		n = &s
	}
	var f []string
	for _, k := range sit.Accepted {
		f = append(f, k.Fingerprint())
	}
	item := keys.PeerKeyFile(sit.PeerName)
	list := func(ks []string) string { return "[" + strings.Join(ks, ", ") + "]" }
	var out []PlannedStep
	prev := model[string]{X: x, N: n, F: f}
	for _, m := range simulate(x, n, f, fresh, resume) {
		ps := PlannedStep{Step: m.Step}
		switch m.Step {
		case Prepare:
			ps.Store, ps.Write = thisAddr, keys.NextKeyFile+" := "+fresh
		case Stage:
			ps.Store, ps.Write = peerAddr, item+" := "+list(m.F)
			ps.Wait = "the peer's gateway to list " + *prev.N
		case Switch:
			ps.Store, ps.Write = thisAddr, keys.PrivateKeyFile+" := "+keys.NextKeyFile+" ("+m.X+"), delete "+keys.NextKeyFile
			ps.Wait = "this side's gateway to run " + m.X + " (instead of " + prev.X + ") and the peer's gateway to have a handshake on it"
		case Revoke:
			ps.Store, ps.Write = peerAddr, item+" := "+list(m.F)
			ps.Wait = "the peer's gateway to drop " + prev.F[0]
		case Unstage:
			ps.Store, ps.Write = peerAddr, item+" := "+list(m.F)+" (unstaging "+prev.F[1]+", which this side does not hold)"
			ps.Wait = "the peer's gateway to drop " + prev.F[1]
		case Tidy:
			ps.Store, ps.Write = thisAddr, "delete "+keys.NextKeyFile+" (it is already "+keys.PrivateKeyFile+")"
		}
		out = append(out, ps)
		prev = m
	}
	return out
}
