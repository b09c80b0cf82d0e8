package rotate

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/tunnel-dev/tunnel/keys"
	"github.com/tunnel-dev/tunnel/keys/store"
)

// State is where a rotation stands, as the two stores show it. Below, x is
// this side's current key (private.key), n its next key (next.key) and F
// the keys the peer's store accepts for it (peer.<name>.pub), in order.
type State int

const (
	// Settled: F = [x], no next.key. Nothing is under way.
	Settled State = iota
	// Prepared: F = [x], next.key = n.
	Prepared
	// Staged: F = [x, n], next.key = n.
	Staged
	// Switched: F = [o, x]: this side switched from o to x; o is still
	// accepted.
	Switched
	// StrayNext: next.key = x: a switch in a plain directory wrote
	// private.key and was stopped before it deleted next.key.
	StrayNext
	// StaleSuccessor: F = [x, y] where y is not next.key: the peer accepts
	// a successor that this side does not hold (next.key lost or
	// replaced). It is unstaged, and the rotation starts over.
	StaleSuccessor
	// NextAccepted: x is not in F but n is: the peer accepts only keys this
	// side has not switched to yet. Switching repairs it.
	NextAccepted
)

func (s State) String() string {
	switch s {
	case Settled:
		return "settled"
	case Prepared:
		return "prepared"
	case Staged:
		return "staged"
	case Switched:
		return "switched"
	case StrayNext:
		return "stray next key"
	case StaleSuccessor:
		return "stale successor"
	case NextAccepted:
		return "next key accepted"
	}
	return fmt.Sprintf("State(%d)", int(s))
}

// Step is one write of a rotation, with the waits around it.
type Step string

// The steps. Prepare, Stage, Switch and Revoke are a rotation; Unstage and
// Tidy are recoveries.
const (
	Prepare Step = "prepare"
	Stage   Step = "stage"
	Switch  Step = "switch"
	Revoke  Step = "revoke"
	Unstage Step = "unstage"
	Tidy    Step = "tidy"
)

// Steps lists every step, for flag validation.
func Steps() []Step { return []Step{Prepare, Stage, Switch, Revoke, Unstage, Tidy} }

// ParseStep parses a step's name.
func ParseStep(s string) (Step, error) {
	for _, st := range Steps() {
		if string(st) == s {
			return st, nil
		}
	}
	names := make([]string, 0, len(Steps()))
	for _, st := range Steps() {
		names = append(names, string(st))
	}
	return "", fmt.Errorf("unknown step %q; want one of %s", s, strings.Join(names, ", "))
}

// Situation is the two stores, read and classified.
type Situation struct {
	State State
	// PeerName is the name the peer gives this side: its store's item is
	// peer.<PeerName>.pub.
	PeerName string
	// Current is this side's private.key, as its public key.
	Current keys.PublicKey
	// Next is this side's next.key, as its public key, if there is one.
	Next *keys.PublicKey
	// Accepted is the peer's peer.<PeerName>.pub, in order: the active key
	// and a staged successor. With several peer stores, it is that of the
	// store furthest behind, whose state State is.
	Accepted []keys.PublicKey
	// Peers is each peer store's own state, in the rotation's order.
	Peers []PeerSituation

	store string // the peer store classified
}

// Errors Classify returns.
var (
	// ErrBadKey: a store holds a key that does not parse or is weak. The
	// gateway refuses it too; rotate will not start from it.
	ErrBadKey = errors.New("bad key in the store")
	// ErrNoWorkingKey: the peer's store accepts neither of this side's
	// keys, so the tunnel cannot work; rotate does not guess a repair.
	ErrNoWorkingKey = errors.New("the peer does not accept this side's key")
	// ErrPeerName: the peer's store names no key file for this side, or
	// several.
	ErrPeerName = errors.New("cannot tell which peer key file is this side's")
)

// Classify reads this side's and the peer's store snapshots. peerName is
// the name the peer gives this side; "" finds the one peer.<name>.pub in
// the peer's store that lists this side's current or next key.
func Classify(this, peer store.Snapshot, thisAddr, peerAddr, peerName string) (Situation, error) {
	var sit Situation
	b, ok := this.Items[keys.PrivateKeyFile]
	if !ok {
		return sit, fmt.Errorf("%s has no %s: is it this side's store (the gateway whose key is rotated)?", thisAddr, keys.PrivateKeyFile)
	}
	priv, err := keys.ParsePrivateKey(string(b))
	if err != nil {
		return sit, fmt.Errorf("%s: %s: %w: %w; the gateway refuses it too: put a valid key there (tunnel keys generate) before rotating", thisAddr, keys.PrivateKeyFile, ErrBadKey, err)
	}
	sit.Current = priv.Public()
	if b, ok := this.Items[keys.NextKeyFile]; ok {
		next, err := keys.ParsePrivateKey(string(b))
		if err != nil {
			return sit, fmt.Errorf("%s: %s: %w: %w; delete %s (no gateway uses it) and run rotate again", thisAddr, keys.NextKeyFile, ErrBadKey, err, keys.NextKeyFile)
		}
		np := next.Public()
		sit.Next = &np
	}
	if peerName == "" {
		peerName, err = findPeerName(peer, peerAddr, sit.Current, sit.Next)
		if err != nil {
			return sit, err
		}
	}
	sit.PeerName = peerName
	sit.store = peerAddr
	// The peer's own key is not ours to touch, but a gateway refuses every
	// reload while its key file is bad, staging included: say so now.
	if b, ok := peer.Items[keys.PrivateKeyFile]; ok {
		if _, err := keys.ParsePrivateKey(string(b)); err != nil {
			return sit, fmt.Errorf("%s: %s: %w: %w; the peer's gateway refuses every reload while it is there, so it could not stage a key: fix the peer's key first", peerAddr, keys.PrivateKeyFile, ErrBadKey, err)
		}
	}
	item := keys.PeerKeyFile(peerName)
	fb, ok := peer.Items[item]
	if !ok {
		return sit, fmt.Errorf("%s has no %s: is --peer-name %q the name the peer gives this side, and is it the peer's store?", peerAddr, item, peerName)
	}
	active, next, err := keys.ParsePeerKeys(fb)
	if err != nil {
		return sit, fmt.Errorf("%s: %s: %w: %w", peerAddr, item, ErrBadKey, err)
	}
	sit.Accepted = []keys.PublicKey{active}
	if next != nil {
		sit.Accepted = append(sit.Accepted, *next)
	}
	sit.State, err = classify(sit.Current, sit.Next, sit.Accepted)
	if err != nil {
		return sit, fmt.Errorf("%w: %s accepts %s for %s, but this side's %s in %s is %s%s. The tunnel cannot work like this, and rotate will not guess: put this side's public key %s alone in %s, then run rotate again",
			err, peerAddr, fingerprints(sit.Accepted), peerName, keys.PrivateKeyFile, thisAddr, sit.Current.Fingerprint(), nextNote(sit.Next),
			sit.Current, item)
	}
	return sit, nil
}

func nextNote(n *keys.PublicKey) string {
	if n == nil {
		return ""
	}
	return " (and its " + keys.NextKeyFile + " is " + n.Fingerprint() + ")"
}

// classify is the state of (x, n, F); see State. It is generic so that
// the planner can run it on labels for keys not generated yet.
func classify[K comparable](x K, n *K, f []K) (State, error) {
	if len(f) == 0 || len(f) > 2 {
		return 0, fmt.Errorf("%d accepted keys; want one or two", len(f))
	}
	switch {
	case n != nil && *n == x && slices.Contains(f, x):
		return StrayNext, nil
	case n != nil && *n == x:
		return 0, ErrNoWorkingKey
	case f[0] == x && len(f) == 1 && n == nil:
		return Settled, nil
	case f[0] == x && len(f) == 1:
		return Prepared, nil
	case f[0] == x && n != nil && f[1] == *n:
		return Staged, nil
	case f[0] == x:
		return StaleSuccessor, nil
	case len(f) == 2 && f[1] == x:
		return Switched, nil
	case n != nil && slices.Contains(f, *n):
		return NextAccepted, nil
	}
	return 0, ErrNoWorkingKey
}

// findPeerName finds the one peer key file in the peer's store that lists
// this side's current or next key.
func findPeerName(peer store.Snapshot, peerAddr string, x keys.PublicKey, n *keys.PublicKey) (string, error) {
	var found []string
	var bad []error
	for _, item := range peer.Names() {
		name, ok := keys.PeerOfKeyFile(item)
		if !ok {
			continue
		}
		active, next, err := keys.ParsePeerKeys(peer.Items[item])
		if err != nil {
			bad = append(bad, fmt.Errorf("%s: %s: %w: %w", peerAddr, item, ErrBadKey, err))
			continue
		}
		ks := []keys.PublicKey{active}
		if next != nil {
			ks = append(ks, *next)
		}
		if slices.Contains(ks, x) || n != nil && slices.Contains(ks, *n) {
			found = append(found, name)
		}
	}
	switch len(found) {
	case 1:
		return found[0], nil
	case 0:
		if len(bad) > 0 {
			// This side's file may be the one that does not parse.
			return "", errors.Join(bad...)
		}
		return "", fmt.Errorf("%w: no peer.<name>.pub in %s lists this side's key %s: check that --peer-store is the peer's store, or pass --peer-name", ErrPeerName, peerAddr, x.Fingerprint())
	default:
		return "", fmt.Errorf("%w: %s lists this side's key in %s: pass --peer-name", ErrPeerName, peerAddr, strings.Join(found, ", "))
	}
}

func fingerprints(ks []keys.PublicKey) string {
	s := make([]string, len(ks))
	for i, k := range ks {
		s[i] = k.Fingerprint()
	}
	return "[" + strings.Join(s, ", ") + "]"
}
