package tunnel

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
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
	PrivateKey                     bool
	PeersAdded, PeersRemoved       []string
	PeersChanged                   []string
	RulesStarted, RulesStopped     []string
	UnchangedPeers, UnchangedRules int
}

// Empty reports whether nothing changed.
func (c Changes) Empty() bool {
	return !c.PrivateKey && len(c.PeersAdded)+len(c.PeersRemoved)+len(c.PeersChanged)+len(c.RulesStarted)+len(c.RulesStopped) == 0
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
	return strings.Join(parts, "; ")
}

// Reload applies a new configuration to the running gateway, changing only
// what differs: a peer whose settings are unchanged keeps its sessions and
// flows, a rule whose settings are unchanged keeps its listeners and
// flows. The private key is re-read from Config.Interface.PrivateKeyFile
// (unless the gateway was given its key directly). On any error nothing is
// applied and the running configuration stays.
func (g *Gateway) Reload(ctx context.Context, c *config.Config) (Changes, error) {
	g.reload.Lock()
	defer g.reload.Unlock()
	var ch Changes
	if g.state.Load() != stateRunning {
		return ch, ErrNotRunning
	}
	old := g.conf()
	if err := needsRestart(old, c); err != nil {
		return ch, err
	}
	priv := g.priv
	if g.PrivateKey == nil {
		k, err := keys.LoadPrivateKey(c.Interface.PrivateKeyFile)
		if err != nil {
			return ch, fmt.Errorf("%w: interface.privateKeyFile: %w", ErrBadConfig, err)
		}
		priv = k
	}
	pub := priv.Public()
	for _, p := range c.Peers {
		if slices.Contains(p.Keys(), pub) {
			return ch, fmt.Errorf("%w: peer %q has this gateway's own public key", ErrBadConfig, p.Name)
		}
	}
	var fresh []*peer
	for _, pc := range c.Peers {
		p, err := g.newPeer(ctx, pc)
		if err != nil {
			return ch, err
		}
		fresh = append(fresh, p)
	}

	// Peers first, in one device change.
	g.pmu.Lock()
	oldPeers := map[string]*peer{}
	for _, p := range g.peers {
		oldPeers[p.name] = p
	}
	var b strings.Builder
	for _, p := range fresh {
		o := oldPeers[p.name]
		delete(oldPeers, p.name)
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
	for name, o := range oldPeers {
		ch.PeersRemoved = append(ch.PeersRemoved, name)
		for _, k := range o.deviceKeys() {
			b.WriteString(uapiRemove(k))
		}
	}
	if priv != g.priv {
		ch.PrivateKey = true
		b.WriteString("private_key=" + priv.UAPIHex() + "\n")
	}
	if b.Len() > 0 {
		if err := g.dev.IpcSet(b.String()); err != nil {
			g.pmu.Unlock()
			return Changes{}, fmt.Errorf("applying the new peers to WireGuard: %w", err)
		}
	}
	g.peers = fresh
	g.priv, g.pub = priv, pub
	g.pmu.Unlock()

	// Then the policy, routes and rules.
	var routes []netip.Prefix
	for _, p := range c.Peers {
		routes = append(routes, p.AllowedIPs...)
	}
	g.ns.SetRoutes(routes)
	g.filter.SetPorts(exposedPorts(c))
	g.cfg.Store(c)

	keep := map[string]bool{}
	for _, e := range c.Expose {
		keep[kindExpose+"/"+e.Name+fmt.Sprint(e)] = true
	}
	for _, f := range c.Forward {
		keep[kindForward+"/"+f.Name+fmt.Sprint(f)] = true
	}
	running := map[string]bool{}
	drainCtx, cancel := context.WithTimeout(ctx, min(g.DrainTimeout, 5*time.Second))
	defer cancel()
	for _, r := range g.ruleList() {
		id := r.id()
		if keep[id] {
			running[id] = true
			ch.UnchangedRules++
			continue
		}
		g.removeRule(drainCtx, r)
		ch.RulesStopped = append(ch.RulesStopped, r.name)
	}
	var errs []error
	for _, e := range c.Expose {
		if !running[kindExpose+"/"+e.Name+fmt.Sprint(e)] {
			if err := g.addExpose(g.runCtx, e); err != nil {
				errs = append(errs, err)
			}
			ch.RulesStarted = append(ch.RulesStarted, e.Name)
		}
	}
	for _, f := range c.Forward {
		if !running[kindForward+"/"+f.Name+fmt.Sprint(f)] {
			if err := g.addForward(g.runCtx, f); err != nil {
				errs = append(errs, err)
			}
			ch.RulesStarted = append(ch.RulesStarted, f.Name)
		}
	}
	if len(errs) > 0 {
		// Peers are applied; a rule that could not start (its port taken)
		// shows in Ready and Status.
		return ch, fmt.Errorf("reloading rules: %w", errors.Join(errs...))
	}
	return ch, nil
}

// id identifies a rule with its whole configuration: a changed rule is a
// different rule.
func (r *rule) id() string {
	if r.kind == kindExpose {
		return kindExpose + "/" + r.name + fmt.Sprint(r.expose)
	}
	return kindForward + "/" + r.name + fmt.Sprint(r.forward)
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
