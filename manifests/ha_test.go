package manifests

import (
	"net/netip"
	"slices"
	"testing"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/labels"
)

// The HA overlays run two gateway replicas a side, each a Deployment of
// one pod (a key is one peer) with its own key Secret and tunnel address,
// never two on one node, under a PodDisruptionBudget that keeps one up;
// the listening side gives each its own load balancer, and the dialing
// side accepts nothing from outside the cluster.
func TestHAGateways(t *testing.T) {
	for _, o := range overlays {
		b := build(t, o.dir)
		gs := gateways(t, b)
		if len(gs) < 2 {
			continue
		}
		t.Run(o.dir, func(t *testing.T) {
			secrets, addrs, listeners := map[string]string{}, map[netip.Addr]string{}, 0
			for _, g := range gs {
				d := g.pod.d
				if d.Spec.Replicas == nil || *d.Spec.Replicas != 1 {
					t.Errorf("%s: replicas %v, want 1: each replica is its own Deployment with its own key", d.Name, d.Spec.Replicas)
				}
				var mounted []string
				for _, v := range g.pod.spec.Volumes {
					if v.Secret != nil {
						mounted = append(mounted, v.Secret.SecretName)
					}
				}
				if !slices.Equal(mounted, []string{g.secret}) {
					t.Errorf("%s mounts Secrets %v, want exactly %s", d.Name, mounted, g.secret)
				}
				if other, ok := secrets[g.secret]; ok {
					t.Errorf("%s and %s share key Secret %s: no private key is shared between running gateways", other, d.Name, g.secret)
				}
				secrets[g.secret] = d.Name
				for _, a := range g.cfg.Interface.Addresses {
					if other, ok := addrs[a]; ok {
						t.Errorf("%s and %s share tunnel address %v", other, d.Name, a)
					}
					addrs[a] = d.Name
				}
				if g.cfg.Interface.ListenPort != 0 {
					listeners++
				}
				checkAntiAffinity(t, g, gs)
				for _, p := range g.cfg.Peers {
					if p.PersistentKeepalive == 0 {
						t.Errorf("%s: peer %s has no keepalive: an HA pair must stay warm so a failover needs no handshake", d.Name, p.Name)
					}
				}
			}
			checkPDB(t, b, gs)
			switch listeners {
			case len(gs):
				// Each listener has its own load balancer: checked per pair
				// by TestGatewayPairs. Here: as many as replicas.
				n := 0
				for _, s := range b.services() {
					if s.Spec.Type == corev1.ServiceTypeLoadBalancer {
						n++
					}
				}
				if n != len(gs) {
					t.Errorf("%d load balancers for %d listening replicas", n, len(gs))
				}
			case 0:
				checkNoInbound(t, b, gs)
			default:
				t.Errorf("%d of %d replicas listen: replicas of one side should be alike", listeners, len(gs))
			}
		})
	}
}

// checkAntiAffinity: g's pods are never scheduled onto a node that runs
// any gateway replica, itself included (so a Recreate rollout and a
// reschedule never pair two on one node).
func checkAntiAffinity(t *testing.T, g gw, gs []gw) {
	t.Helper()
	a := g.pod.spec.Affinity
	if a == nil || a.PodAntiAffinity == nil {
		t.Errorf("%s has no pod anti-affinity", g.pod.name)
		return
	}
	for _, other := range gs {
		found := false
		for _, term := range a.PodAntiAffinity.RequiredDuringSchedulingIgnoredDuringExecution {
			found = found || term.TopologyKey == "kubernetes.io/hostname" && term.LabelSelector != nil && selects(term.LabelSelector, labels.Set(other.pod.labels))
		}
		if !found {
			t.Errorf("%s: no required anti-affinity on kubernetes.io/hostname that keeps it off %s's node", g.pod.name, other.pod.name)
		}
	}
}

// checkPDB: one PodDisruptionBudget in the gateways' namespace covers
// every replica and keeps at least one of them running.
func checkPDB(t *testing.T, b *bundle, gs []gw) {
	t.Helper()
	var pdbs []*policyv1.PodDisruptionBudget
	for _, o := range b.objs {
		if p, ok := o.(*policyv1.PodDisruptionBudget); ok && p.Namespace == "tunnel" {
			pdbs = append(pdbs, p)
		}
	}
	if len(pdbs) != 1 {
		t.Fatalf("%d PodDisruptionBudgets for the gateways, want 1", len(pdbs))
	}
	p := pdbs[0]
	if p.Spec.MinAvailable == nil || p.Spec.MinAvailable.IntValue() != 1 || p.Spec.MaxUnavailable != nil {
		t.Errorf("PodDisruptionBudget %s: minAvailable %v maxUnavailable %v, want minAvailable 1", p.Name, p.Spec.MinAvailable, p.Spec.MaxUnavailable)
	}
	for _, g := range gs {
		if p.Spec.Selector == nil || !selects(p.Spec.Selector, labels.Set(g.pod.labels)) {
			t.Errorf("PodDisruptionBudget %s does not cover %s", p.Name, g.pod.name)
		}
	}
}

// checkNoInbound: the dialing side has no Service a packet from outside
// the cluster could reach the gateways through, and no NetworkPolicy
// admitting an address block to them.
func checkNoInbound(t *testing.T, b *bundle, gs []gw) {
	t.Helper()
	for _, s := range b.services() {
		if s.Spec.Type != corev1.ServiceTypeLoadBalancer && s.Spec.Type != corev1.ServiceTypeNodePort && len(s.Spec.ExternalIPs) == 0 {
			continue
		}
		for _, g := range gs {
			if s.Namespace == g.pod.ns && labels.SelectorFromSet(s.Spec.Selector).Matches(labels.Set(g.pod.labels)) {
				t.Errorf("Service %s (%s) exposes %s, on the side that dials out", s.Name, s.Spec.Type, g.pod.name)
			}
		}
	}
	for _, np := range b.policies() {
		for _, g := range gs {
			if np.Namespace != g.pod.ns || !selects(&np.Spec.PodSelector, labels.Set(g.pod.labels)) {
				continue
			}
			for _, r := range np.Spec.Ingress {
				if slices.ContainsFunc(r.From, func(p networkingv1.NetworkPolicyPeer) bool { return p.IPBlock != nil }) {
					t.Errorf("NetworkPolicy %s admits an address block to %s, on the side that dials out", np.Name, g.pod.name)
				}
			}
		}
	}
}
