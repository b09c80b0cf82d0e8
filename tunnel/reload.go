package tunnel

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"time"

	"github.com/tunnel-dev/tunnel/keys"
	"github.com/tunnel-dev/tunnel/tunnel/config"
)

// ErrNeedsRestart is returned by Reload for a change only a restart can
// apply (the interface's name, port, addresses or MTU, or the admin
// address). Nothing of the new configuration is applied.
var ErrNeedsRestart = errors.New("needs a restart")

// Changes says what a Reload changed.
type Changes struct {
	PrivateKey                 bool
	PeersAdded, PeersRemoved   []string
	PeersChanged               []string
	RulesStarted, RulesStopped []string
	// RulesFailed names the new or changed rules that could not start
	// (see Reload); they are not running.
	RulesFailed                    []string
	UnchangedPeers, UnchangedRules int
}

// Empty reports whether nothing changed.
func (c Changes) Empty() bool {
	return !c.PrivateKey && len(c.PeersAdded)+len(c.PeersRemoved)+len(c.PeersChanged)+len(c.RulesStarted)+len(c.RulesStopped)+len(c.RulesFailed) == 0
}

func (c Changes) String() string {
	if c.Empty() {
		return "nothing changed"
	}
	var parts []string
	if c.PrivateKey {
		parts = append(parts, "new private key")
	}
	add := func(what string, names []string) {
		if len(names) > 0 {
			parts = append(parts, what+" "+strings.Join(names, ", "))
		}
	}
	add("peers added:", c.PeersAdded)
	add("peers removed:", c.PeersRemoved)
	add("peers changed:", c.PeersChanged)
	add("rules started:", c.RulesStarted)
	add("rules stopped:", c.RulesStopped)
	add("rules failed to start:", c.RulesFailed)
	return strings.Join(parts, "; ")
}

// Reload applies a new configuration to the running gateway, changing only
// what differs: a peer whose settings are unchanged keeps its sessions and
// flows, a rule whose settings are unchanged keeps its listeners and
// flows. The private key is re-read from c's interface.privateKeyFile
// (unless the gateway was given its key directly).
//
// It runs in three steps, and a step that fails ends the reload with the
// steps before it applied:
//
//  1. validate (prepareReload): a change only a restart can apply
//     (ErrNeedsRestart), an unreadable private or preshared key file, or
//     a peer with the gateway's own key (ErrBadConfig). Nothing is
//     applied; the running configuration stays.
//  2. peers and key (applyPeers), in one change to WireGuard. If WireGuard
//     refuses it, the gateway's peers, key and configuration stay the old
//     ones (see applyPeers for the device itself).
//  3. policy, routes and rules (applyRules). Once here, c is the running
//     configuration (Config returns it). A rule that fails to start, such
//     as a forward rule whose port is taken, is not running; every other
//     rule is: unchanged ones keep running, the rest have started. The
//     error names each rule that failed, and so does Changes.RulesFailed;
//     a later Reload tries it again.
//
// The returned Changes say what was applied, also alongside an error.
// Reload and Close run one at a time.
func (g *Gateway) Reload(ctx context.Context, c *config.Config) (Changes, error) {
	g.life.Lock()
	defer g.life.Unlock()
	if !g.running() {
		return Changes{}, ErrNotRunning
	}
	next, err := g.prepareReload(ctx, c)
	if err != nil {
		return Changes{}, err
	}
	var ch Changes
	if err := g.applyPeers(next, &ch); err != nil {
		return Changes{}, err
	}
	g.ns.SetRoutes(routes(c))
	g.filter.SetPorts(exposedPorts(c))
	g.cfg.Store(c)
	return ch, g.applyRules(ctx, c, &ch)
}

// reloadPlan is a validated configuration's peers and key, ready to apply.
type reloadPlan struct {
	priv  keys.PrivateKey
	peers []*peer
}

// prepareReload checks that c can be applied to the running gateway and
// builds its peers (preshared keys read, endpoints resolved where they
// can be). It changes nothing.
func (g *Gateway) prepareReload(ctx context.Context, c *config.Config) (reloadPlan, error) {
	if err := needsRestart(g.Config(), c); err != nil {
		return reloadPlan{}, err
	}
	g.peers.Lock()
	priv := g.peers.priv
	g.peers.Unlock()
	if g.PrivateKey == nil {
		k, err := keys.LoadPrivateKey(c.Interface.PrivateKeyFile)
		if err != nil {
			return reloadPlan{}, fmt.Errorf("%w: interface.privateKeyFile: %w", ErrBadConfig, err)
		}
		priv = k
	}
	if err := checkOwnKey(c, priv.Public()); err != nil {
		return reloadPlan{}, err
	}
	peers, err := g.newPeers(ctx, c)
	if err != nil {
		return reloadPlan{}, err
	}
	return reloadPlan{priv: priv, peers: peers}, nil
}

// applyPeers makes the plan's peers and key the device's, in one IpcSet
// holding only what differs, and records what changed in ch. On error the
// gateway's peer list and key stay the old ones. wireguard-go applies a
// change line by line, so a refused line leaves the lines before it in the
// device; validation makes that unexpected, since every line is of a kind
// the device accepted at Start.
func (g *Gateway) applyPeers(plan reloadPlan, ch *Changes) error {
	g.peers.Lock()
	defer g.peers.Unlock()
	old := map[string]*peer{}
	for _, p := range g.peers.list {
		old[p.name] = p
	}
	var b strings.Builder
	for _, p := range plan.peers {
		o := old[p.name]
		delete(old, p.name)
		if o == nil {
			ch.PeersAdded = append(ch.PeersAdded, p.name)
			for _, k := range p.deviceKeys() {
				writePeer(&b, p, k, false)
			}
			continue
		}
		// A successor that already took over stays the owner when the
		// configuration promotes it to the peer's key.
		if slices.Contains(p.deviceKeys(), o.owner) {
			p.owner = o.owner
		}
		if !p.endpoint.IsValid() && o.hostport == p.hostport {
			p.endpoint = o.endpoint // a name resolved earlier, or not yet
		}
		if samePeer(o, p) {
			ch.UnchangedPeers++
			continue
		}
		ch.PeersChanged = append(ch.PeersChanged, p.name)
		for _, k := range o.deviceKeys() {
			if !slices.Contains(p.deviceKeys(), k) {
				b.WriteString(uapiRemove(k))
			}
		}
		for _, k := range p.deviceKeys() {
			writePeer(&b, p, k, false)
		}
	}
	for name, o := range old {
		ch.PeersRemoved = append(ch.PeersRemoved, name)
		for _, k := range o.deviceKeys() {
			b.WriteString(uapiRemove(k))
		}
	}
	if plan.priv != g.peers.priv {
		ch.PrivateKey = true
		b.WriteString("private_key=" + plan.priv.UAPIHex() + "\n")
	}
	if b.Len() > 0 {
		if err := g.dev.IpcSet(b.String()); err != nil {
			return fmt.Errorf("applying the new peers to WireGuard: %w", err)
		}
	}
	g.peers.list = plan.peers
	g.peers.priv, g.peers.pub = plan.priv, plan.priv.Public()
	g.auth.strangers.setKey(plan.priv)
	return nil
}

// applyRules stops the running rules c no longer names (or names with
// other settings), giving their flows up to min(DrainTimeout, 5s), then
// starts the rules c names that are not running. A rule that fails to
// start is not running; the others start regardless, and the error names
// each that failed.
func (g *Gateway) applyRules(ctx context.Context, c *config.Config, ch *Changes) error {
	want := configuredRules(c)
	keep := map[string]bool{}
	for _, r := range want {
		keep[r.base().id] = true
	}
	drainCtx, cancel := context.WithTimeout(ctx, min(g.DrainTimeout, 5*time.Second))
	defer cancel()
	running := map[string]bool{}
	for _, r := range g.ruleList() {
		if id := r.base().id; keep[id] {
			running[id] = true
			ch.UnchangedRules++
			continue
		}
		g.removeRule(drainCtx, r)
		ch.RulesStopped = append(ch.RulesStopped, r.base().name)
	}
	var errs []error
	for _, r := range want {
		if running[r.base().id] {
			continue
		}
		if err := g.startRule(g.life.runCtx, r); err != nil {
			errs = append(errs, err)
			ch.RulesFailed = append(ch.RulesFailed, r.base().name)
			continue
		}
		ch.RulesStarted = append(ch.RulesStarted, r.base().name)
	}
	if len(errs) > 0 {
		return fmt.Errorf("reloading rules: %w", errors.Join(errs...))
	}
	return nil
}

func samePeer(a, b *peer) bool {
	return a.key == b.key && reflect.DeepEqual(a.next, b.next) && a.owner == b.owner &&
		reflect.DeepEqual(a.psk, b.psk) && a.hostport == b.hostport && a.endpoint == b.endpoint &&
		a.keepalive == b.keepalive && slices.Equal(a.allowed, b.allowed)
}

// needsRestart refuses changes a running gateway cannot apply.
func needsRestart(old, c *config.Config) error {
	var what []string
	if old.Interface.Name != c.Interface.Name {
		what = append(what, "interface.name")
	}
	if old.Interface.ListenPort != c.Interface.ListenPort {
		what = append(what, "interface.listenPort")
	}
	if !slices.Equal(old.Interface.Addresses, c.Interface.Addresses) {
		what = append(what, "interface.addresses")
	}
	if old.Interface.MTU != c.Interface.MTU {
		what = append(what, "interface.mtu")
	}
	if old.Interface.UAPIDir != c.Interface.UAPIDir {
		what = append(what, "interface.uapiDir")
	}
	if old.Admin != c.Admin {
		what = append(what, "admin")
	}
	if old.Limits != c.Limits {
		what = append(what, "limits")
	}
	if len(what) > 0 {
		return fmt.Errorf("%w: %s changed; restart the gateway to apply it (the running configuration stays)", ErrNeedsRestart, strings.Join(what, ", "))
	}
	return nil
}
