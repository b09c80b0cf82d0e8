package rotate

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/tunnel-dev/tunnel/keys"
)

// Several peer gateways. With gateway replicas (high availability) every
// gateway of the other side holds a key file for this side, and all of
// them must accept the new key before this side switches, or the pairs
// with the ones that do not would go down. Each store is classified on
// its own against this side's keys; the rotation's state is the one of
// the store furthest behind, and each step writes every store that needs
// it, then waits for every peer gateway. The steps are the same as with
// one peer, so an interrupted run resumes from any mix.

// PeerSituation is one peer store, classified.
type PeerSituation struct {
	Store    string
	State    State
	Accepted []keys.PublicKey
}

// peers are every peer side: Peer, then Peers.
func (r *Rotation) peers() []Side {
	return append([]Side{r.Peer}, r.Peers...)
}

// peerStores names the peer stores, for messages and the plan.
func (r *Rotation) peerStores() string {
	var s []string
	for _, p := range r.peers() {
		s = append(s, p.Store.String())
	}
	return strings.Join(s, ", ")
}

// loadAll reads this side's store and every peer store and classifies
// them together.
func (r *Rotation) loadAll(ctx context.Context) (Situation, error) {
	seen := map[string]bool{r.This.Store.String(): true}
	for _, p := range r.peers() {
		if p.Store == nil {
			return Situation{}, errors.New("a peer side has no store")
		}
		if seen[p.Store.String()] {
			return Situation{}, fmt.Errorf("store %s is named twice: each gateway has a store of its own", p.Store)
		}
		seen[p.Store.String()] = true
	}
	this, err := r.This.Store.Load(ctx)
	if err != nil {
		return Situation{}, fmt.Errorf("reading this side's store: %w", err)
	}
	var sits []Situation
	for _, p := range r.peers() {
		snap, err := p.Store.Load(ctx)
		if err != nil {
			return Situation{}, fmt.Errorf("reading the peer's store %s: %w", p.Store, err)
		}
		sit, err := Classify(this, snap, r.This.Store.String(), p.Store.String(), r.PeerName)
		if err != nil {
			return Situation{}, err
		}
		sits = append(sits, sit)
	}
	return combine(sits, r.peerStores())
}

// combine makes one situation of the per-store ones: the state of the
// store furthest behind (see peers.go's comment), with the keys that store
// accepts as Accepted.
func combine(sits []Situation, stores string) (Situation, error) {
	out := sits[0]
	for i, s := range sits {
		out.Peers = append(out.Peers, PeerSituation{Store: sits[i].store, State: s.State, Accepted: s.Accepted})
		if s.PeerName != out.PeerName {
			return Situation{}, fmt.Errorf("%w: %s names this side %q and %s %q: pass --peer-name", ErrPeerName, sits[0].store, out.PeerName, s.store, s.PeerName)
		}
	}
	if len(sits) == 1 {
		return out, nil
	}
	// In order of precedence: the state whose step must come first.
	for _, want := range []State{StrayNext, StaleSuccessor, Prepared, Switched, NextAccepted, Staged, Settled} {
		for _, s := range sits {
			if s.State == want {
				out.State, out.Accepted = s.State, s.Accepted
				return out, nil
			}
		}
	}
	return Situation{}, fmt.Errorf("the peer stores %s are in no state rotate knows", stores)
}

// peerNeeds reports whether peer store i must be written by step.
func (sit Situation) peerNeeds(i int, step Step) bool {
	if len(sit.Peers) == 0 {
		return true
	}
	st := sit.Peers[i].State
	switch step {
	case Stage:
		return st == Prepared
	case Revoke:
		return st == Switched
	case Unstage:
		return st == StaleSuccessor
	}
	return false
}

// setAllPeerKeys writes the peer key file of every peer store the step
// needs to write, from the keys that store holds now.
func (r *Rotation) setAllPeerKeys(ctx context.Context, step Step, sit Situation, item string, want func(have []keys.PublicKey) []keys.PublicKey) error {
	for i, p := range r.peers() {
		if !sit.peerNeeds(i, step) {
			continue
		}
		have := sit.Accepted
		if len(sit.Peers) > i {
			have = sit.Peers[i].Accepted
		}
		if err := r.setPeerKeys(ctx, step, p.Store, item, [][]keys.PublicKey{slices.Clone(have)}, want(have)); err != nil {
			return err
		}
	}
	return nil
}

// peerStatuses reads every peer gateway's status, as one list.
func (r *Rotation) peerStatuses(ctx context.Context) ([]GatewayStatus, error) {
	var all []GatewayStatus
	for _, p := range r.peers() {
		sts, err := p.Status.Statuses(ctx)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", p.Status, err)
		}
		all = append(all, sts...)
	}
	return all, nil
}
