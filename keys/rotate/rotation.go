package rotate

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"time"

	"github.com/tunnel-dev/tunnel/keys"
	"github.com/tunnel-dev/tunnel/keys/store"
)

// Side is one gateway as a rotation sees it: its key store, and where to
// read its status.
type Side struct {
	Store  store.Store
	Status StatusSource
}

// Rotation replaces This side's key. Set its fields, then call Run (or
// Plan for a dry run).
type Rotation struct {
	// This is the side whose key is replaced; Peer is the other gateway,
	// whose store holds the keys it accepts for This.
	This, Peer Side
	// Peers are more gateways of the other side (replicas), each with a
	// store of its own holding keys for This: every step that writes
	// Peer's store writes theirs too, and every wait waits for them all,
	// so that no pair with This loses its tunnel.
	Peers []Side
	// PeerName is the name Peer gives This (Peer's store holds
	// peer.<PeerName>.pub); "" finds it by key.
	PeerName string
	// Timeout bounds each wait for the gateways; default 2 minutes.
	Timeout time.Duration
	// Poll is how often statuses are read while waiting; default 250ms.
	Poll time.Duration
	// Resume finishes an interrupted rotation and never starts one: from
	// a settled state it only waits for the gateways to agree with the
	// stores.
	Resume bool
	// StopAfter, if set, ends the run after that step (for tests, and
	// for operators who want to watch each step).
	StopAfter Step
	// Out receives one line per step; nil discards them.
	Out io.Writer
	// Logger receives details (polls, writes); nil discards them.
	Logger *slog.Logger
}

// Result is what a run did.
type Result struct {
	// Steps taken, in order.
	Steps []Step
	// Key is This side's public key at the end.
	Key keys.PublicKey
	// State is the state the stores were left in.
	State State
	// Stopped: the run ended at StopAfter, not at the end.
	Stopped bool
}

// errStale: a store changed between the read a step was planned from and
// its write; the run reads again and re-plans.
var errStale = errors.New("the store changed since the step was planned")

func (r *Rotation) defaults() {
	if r.Timeout <= 0 {
		r.Timeout = 2 * time.Minute
	}
	if r.Poll <= 0 {
		r.Poll = 250 * time.Millisecond
	}
	if r.Out == nil {
		r.Out = io.Discard
	}
	if r.Logger == nil {
		r.Logger = slog.New(slog.DiscardHandler)
	}
}

func (r *Rotation) load(ctx context.Context) (Situation, error) { return r.loadAll(ctx) }

// Plan reads both stores and says what Run would do, writing nothing.
func (r *Rotation) Plan(ctx context.Context) (Plan, error) {
	r.defaults()
	sit, err := r.load(ctx)
	if err != nil {
		return Plan{}, err
	}
	return Plan{Situation: sit, Steps: planFrom(sit, r.Resume, r.This.Store.String(), r.peerStores())}, nil
}

// Run drives the rotation to its end (or to StopAfter), one step at a
// time, re-reading both stores before each step. When it returns an error
// the stores are in one of the states Classify knows, and running again
// resumes.
func (r *Rotation) Run(ctx context.Context) (Result, error) {
	r.defaults()
	var res Result
	for _, p := range r.peers() {
		if r.This.Status == nil || p.Status == nil {
			return res, errors.New("a rotation needs every gateway's status to confirm its steps")
		}
	}
	sit, err := r.load(ctx)
	if err != nil {
		return res, err
	}
	fmt.Fprintf(r.Out, "rotating %s's key: this side's store %s, the peer's %s; state: %s (%s)\n",
		sit.PeerName, r.This.Store, r.peerStores(), sit.State, describe(sit))
	if err := r.checkGateways(ctx, sit); err != nil {
		return res, err
	}
	rotated := false
	var fresh *keys.PrivateKey // the key prepare generates, once per run
	for range maxSteps {
		sit, err := r.load(ctx)
		if err != nil {
			return res, err
		}
		res.Key, res.State = sit.Current, sit.State
		step, done := next(sit.State, rotated, r.Resume)
		if done {
			if !rotated {
				if err := r.settle(ctx, "check", sit); err != nil {
					return res, err
				}
				fmt.Fprintf(r.Out, "nothing to finish: %s runs %s, and the peer accepts only it\n", sit.PeerName, sit.Current.Fingerprint())
			} else {
				fmt.Fprintf(r.Out, "done: %s's public key is %s\n", sit.PeerName, sit.Current)
			}
			return res, nil
		}
		began := time.Now()
		line, err := r.step(ctx, step, sit, &fresh)
		if errors.Is(err, errStale) {
			r.Logger.Info("a store changed under the step; reading again", "step", step, "err", err)
			continue
		}
		if err != nil {
			return res, err
		}
		res.Steps = append(res.Steps, step)
		rotated = rotated || rotatesKey(step)
		fmt.Fprintf(r.Out, "%s: %s (%.1fs)\n", step, line, time.Since(began).Seconds())
		if step == r.StopAfter {
			res.Stopped = true
			if sit, err := r.load(ctx); err == nil {
				res.Key, res.State = sit.Current, sit.State
			}
			fmt.Fprintf(r.Out, "stopped after %s, as asked: run the same command again to continue\n", step)
			return res, nil
		}
	}
	return res, fmt.Errorf("gave up after %d steps: the stores keep changing under the rotation (is another rotate running?)", maxSteps)
}

// checkGateways reads both statuses once before anything is written: each
// must answer, and this side's gateway must run a key the stores know.
func (r *Rotation) checkGateways(ctx context.Context, sit Situation) error {
	this, err := r.statuses(ctx, r.This.Status)
	if err != nil {
		return fmt.Errorf("reading this side's gateway status (--status %s): %w", r.This.Status, err)
	}
	for _, p := range r.peers() {
		if _, err := r.statuses(ctx, p.Status); err != nil {
			return fmt.Errorf("reading the peer's gateway status (--peer-status %s): %w", p.Status, err)
		}
	}
	known := slices.Clone(sit.Accepted)
	for _, p := range sit.Peers {
		known = append(known, p.Accepted...)
	}
	known = append(known, sit.Current)
	if sit.Next != nil {
		known = append(known, *sit.Next)
	}
	for _, st := range this {
		k, _ := keys.ParsePublicKey(st.PublicKey)
		if !slices.Contains(known, k) {
			return fmt.Errorf("this side's gateway (--status %s) runs key %s, which neither store knows for %s (%s): is --status the gateway that reads --store %s?",
				r.This.Status, k.Fingerprint(), sit.PeerName, fingerprints(known), r.This.Store)
		}
	}
	return nil
}

func (r *Rotation) statuses(ctx context.Context, s StatusSource) ([]GatewayStatus, error) {
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	return s.Statuses(ctx)
}

// settle waits for the gateways to run what settled stores hold: this
// side its key, the peer that key alone for this side (so an earlier
// rotation's revoke has been applied).
func (r *Rotation) settle(ctx context.Context, step Step, sit Situation) error {
	x := sit.Current
	return r.wait(ctx, step, sit, fmt.Sprintf("this side's gateway to run %s and the peer's gateway to accept it, and no other key, for %s", x.Fingerprint(), sit.PeerName),
		func(v view) bool { return v.runs(x) && v.lists(x) && v.listsOnly(sit.PeerName, x) }, sit.Accepted...)
}

// step takes one step: the wait its write relies on, the write, and the
// wait that confirms it. It returns the progress line.
func (r *Rotation) step(ctx context.Context, step Step, sit Situation, fresh **keys.PrivateKey) (string, error) {
	x, item := sit.Current, keys.PeerKeyFile(sit.PeerName)
	switch step {
	case Prepare:
		if err := r.settle(ctx, step, sit); err != nil {
			return "", err
		}
		if *fresh == nil {
			k, err := keys.GeneratePrivateKey()
			if err != nil {
				return "", err
			}
			*fresh = &k
		}
		k := **fresh
		wrote := false
		_, err := r.update(ctx, step, r.This.Store, func(s store.Snapshot) (store.Change, error) {
			wrote = false
			if err := r.expectKey(s, keys.PrivateKeyFile, x); err != nil {
				return store.Change{}, err
			}
			if s.Has(keys.NextKeyFile) {
				return store.Change{}, nil // prepared already, by another run
			}
			wrote = true
			return store.Change{Set: map[string][]byte{keys.NextKeyFile: []byte(k.Base64() + "\n")}}, nil
		})
		if err != nil {
			return "", err
		}
		if !wrote {
			return fmt.Sprintf("%s in %s was written meanwhile, by another run; using it", keys.NextKeyFile, r.This.Store), nil
		}
		return fmt.Sprintf("wrote %s to %s (a new key, public %s)", keys.NextKeyFile, r.This.Store, k.Public()), nil

	case Stage:
		n := *sit.Next
		if err := r.wait(ctx, step, sit, fmt.Sprintf("this side's gateway to run %s and the peer's gateway to accept it", x.Fingerprint()),
			func(v view) bool { return v.runs(x) && v.lists(x) }, x); err != nil {
			return "", err
		}
		if err := r.setAllPeerKeys(ctx, step, sit, item, func([]keys.PublicKey) []keys.PublicKey { return []keys.PublicKey{x, n} }); err != nil {
			return "", err
		}
		if err := r.wait(ctx, step, sit, fmt.Sprintf("the peer's gateway to list %s as %s's successor", n.Fingerprint(), sit.PeerName),
			func(v view) bool { return v.lists(n) }, x, n); err != nil {
			return "", err
		}
		return fmt.Sprintf("%s in %s is %s; the peer's gateway lists the successor", item, r.peerStores(), fingerprints([]keys.PublicKey{x, n})), nil

	case Switch:
		n := *sit.Next
		if err := r.wait(ctx, step, sit, fmt.Sprintf("the peer's gateway to list %s before this side switches to it", n.Fingerprint()),
			func(v view) bool { return v.lists(n) }, x, n); err != nil {
			return "", err
		}
		_, err := r.update(ctx, step, r.This.Store, func(s store.Snapshot) (store.Change, error) {
			cur, err := parsePrivate(s, keys.PrivateKeyFile)
			if err != nil {
				return store.Change{}, err
			}
			if cur.Public() == n && !s.Has(keys.NextKeyFile) {
				return store.Change{}, nil // switched already
			}
			nk, err := parsePrivate(s, keys.NextKeyFile)
			if err != nil {
				return store.Change{}, err
			}
			if cur.Public() != x || nk.Public() != n {
				return store.Change{}, fmt.Errorf("%w: %s no longer holds %s with next key %s", errStale, r.This.Store, x.Fingerprint(), n.Fingerprint())
			}
			return store.Change{Set: map[string][]byte{keys.PrivateKeyFile: []byte(nk.Base64() + "\n")}, Delete: []string{keys.NextKeyFile}}, nil
		})
		if err != nil {
			return "", err
		}
		if err := r.wait(ctx, step, sit, fmt.Sprintf("this side's gateway to run %s and the peer's gateway to show it active with a handshake", n.Fingerprint()),
			func(v view) bool { return v.runs(n) && v.active(n) }, x, n); err != nil {
			return "", err
		}
		return fmt.Sprintf("%s in %s is the new key %s; this side's gateway runs it, and the peer's has a handshake on it", keys.PrivateKeyFile, r.This.Store, n.Fingerprint()), nil

	case Revoke:
		old := sit.Accepted[0]
		if err := r.wait(ctx, step, sit, fmt.Sprintf("this side's gateway to run %s and the peer's gateway to show it active with a handshake", x.Fingerprint()),
			func(v view) bool { return v.runs(x) && v.active(x) }, old, x); err != nil {
			return "", err
		}
		if err := r.setAllPeerKeys(ctx, step, sit, item, func([]keys.PublicKey) []keys.PublicKey { return []keys.PublicKey{x} }); err != nil {
			return "", err
		}
		if err := r.wait(ctx, step, sit, fmt.Sprintf("the peer's gateway to drop the old key %s", old.Fingerprint()),
			func(v view) bool { return v.listsNone(old) }, old, x); err != nil {
			return "", err
		}
		return fmt.Sprintf("%s in %s is %s; the peer's gateway no longer accepts the old key %s", item, r.peerStores(), fingerprints([]keys.PublicKey{x}), old.Fingerprint()), nil

	case Unstage:
		stale := sit.Accepted[1]
		if err := r.wait(ctx, step, sit, fmt.Sprintf("this side's gateway to run %s and the peer's gateway to accept it", x.Fingerprint()),
			func(v view) bool { return v.runs(x) && v.lists(x) }, x, stale); err != nil {
			return "", err
		}
		if err := r.setAllPeerKeys(ctx, step, sit, item, func([]keys.PublicKey) []keys.PublicKey { return []keys.PublicKey{x} }); err != nil {
			return "", err
		}
		if err := r.wait(ctx, step, sit, fmt.Sprintf("the peer's gateway to drop %s", stale.Fingerprint()),
			func(v view) bool { return v.listsNone(stale) }, x, stale); err != nil {
			return "", err
		}
		return fmt.Sprintf("%s in %s is %s again: the successor %s was not held by this side; starting over", item, r.peerStores(), fingerprints([]keys.PublicKey{x}), stale.Fingerprint()), nil

	case Tidy:
		_, err := r.update(ctx, step, r.This.Store, func(s store.Snapshot) (store.Change, error) {
			if !s.Has(keys.NextKeyFile) {
				return store.Change{}, nil
			}
			if err := r.expectKey(s, keys.NextKeyFile, x); err != nil {
				return store.Change{}, err
			}
			if err := r.expectKey(s, keys.PrivateKeyFile, x); err != nil {
				return store.Change{}, err
			}
			return store.Change{Delete: []string{keys.NextKeyFile}}, nil
		})
		if err != nil {
			return "", err
		}
		return fmt.Sprintf("deleted %s from %s: an interrupted switch had already made it %s", keys.NextKeyFile, r.This.Store, keys.PrivateKeyFile), nil
	}
	return "", fmt.Errorf("unknown step %q", step)
}

// update writes one store by compare-and-swap, logging the change (item
// names only).
func (r *Rotation) update(ctx context.Context, step Step, s store.Store, change func(store.Snapshot) (store.Change, error)) (store.Snapshot, error) {
	var last store.Change
	out, err := store.Update(ctx, s, func(snap store.Snapshot) (store.Change, error) {
		ch, err := change(snap)
		last = ch
		if err == nil && !ch.Empty() {
			r.Logger.Debug("writing", "step", step, "store", s.String(), "change", ch.Describe())
		}
		return ch, err
	})
	if err != nil && !errors.Is(err, errStale) {
		return out, fmt.Errorf("%s: writing %s: %w", step, s, err)
	}
	if err == nil && !last.Empty() {
		r.Logger.Info("wrote", "step", step, "store", s.String(), "change", last.Describe())
	}
	return out, err
}

// setPeerKeys makes the peer's key file for this side hold want, provided
// it now holds one of from (or want already).
func (r *Rotation) setPeerKeys(ctx context.Context, step Step, peer store.Store, item string, from [][]keys.PublicKey, want []keys.PublicKey) error {
	_, err := r.update(ctx, step, peer, func(s store.Snapshot) (store.Change, error) {
		b, ok := s.Items[item]
		if !ok {
			return store.Change{}, fmt.Errorf("%w: %s no longer has %s", errStale, peer, item)
		}
		active, next, err := keys.ParsePeerKeys(b)
		if err != nil {
			return store.Change{}, fmt.Errorf("%w: %s: %s: %w", errStale, peer, item, err)
		}
		have := []keys.PublicKey{active}
		if next != nil {
			have = append(have, *next)
		}
		if slices.Equal(have, want) {
			return store.Change{}, nil
		}
		for _, f := range from {
			if slices.Equal(have, f) {
				return store.Change{Set: map[string][]byte{item: keys.FormatPeerKeys(want...)}}, nil
			}
		}
		return store.Change{}, fmt.Errorf("%w: %s: %s is now %s", errStale, peer, item, fingerprints(have))
	})
	return err
}

func parsePrivate(s store.Snapshot, item string) (keys.PrivateKey, error) {
	b, ok := s.Items[item]
	if !ok {
		return keys.PrivateKey{}, fmt.Errorf("%w: %s is gone", errStale, item)
	}
	k, err := keys.ParsePrivateKey(string(b))
	if err != nil {
		return keys.PrivateKey{}, fmt.Errorf("%s: %w: %w", item, ErrBadKey, err)
	}
	return k, nil
}

// expectKey checks that item holds the private key of public key want.
func (r *Rotation) expectKey(s store.Snapshot, item string, want keys.PublicKey) error {
	k, err := parsePrivate(s, item)
	if err != nil {
		return err
	}
	if k.Public() != want {
		return fmt.Errorf("%w: %s in %s is no longer %s", errStale, item, r.This.Store, want.Fingerprint())
	}
	return nil
}

// wait polls both gateways' statuses until cond holds or Timeout passes.
// known are keys worth naming in a timeout message.
func (r *Rotation) wait(ctx context.Context, step Step, sit Situation, what string, cond func(view) bool, known ...keys.PublicKey) error {
	ctx, cancel := context.WithTimeout(ctx, r.Timeout)
	defer cancel()
	tick := time.NewTicker(r.Poll)
	defer tick.Stop()
	var last view
	var lastErr error
	for {
		this, err := r.This.Status.Statuses(ctx)
		if err == nil {
			var peer []GatewayStatus
			peer, err = r.peerStatuses(ctx)
			if err == nil {
				last, lastErr = view{this: this, peer: peer}, nil
				if cond(last) {
					return nil
				}
			}
		}
		if err != nil && ctx.Err() == nil {
			lastErr = err
			r.Logger.Debug("reading a gateway's status", "step", step, "err", err)
		}
		select {
		case <-ctx.Done():
			seen := last.seen(sit.PeerName, known...)
			if lastErr != nil {
				seen = fmt.Sprintf("%s (last status read failed: %v)", seen, lastErr)
			}
			if seen == "" {
				seen = "no status read succeeded"
			}
			why := "timed out after " + r.Timeout.String()
			if errors.Is(context.Cause(ctx), context.Canceled) {
				why = "interrupted"
			}
			return fmt.Errorf("%s: %s waiting for %s; last seen: %s. What is written is consistent: run the same command again to resume", step, why, what, seen)
		case <-tick.C:
		}
	}
}
