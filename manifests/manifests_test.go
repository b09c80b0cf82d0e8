package manifests

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"net"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"

	bunnyconfig "github.com/tunnel-dev/tunnel/bunny/config"
	"github.com/tunnel-dev/tunnel/internal/yamlcheck"
	"github.com/tunnel-dev/tunnel/keys"
	"github.com/tunnel-dev/tunnel/manifests/image"
	"github.com/tunnel-dev/tunnel/relay/auth"
	"github.com/tunnel-dev/tunnel/relay/producers"
	"github.com/tunnel-dev/tunnel/tunnel/config"
)

// Every overlay builds, every object decodes strictly into its k8s.io/api
// type, and each holds what its cluster needs and nothing it must not.
func TestOverlaysBuild(t *testing.T) {
	type obj struct{ kind, ns, name string }
	gatewayBase := []obj{
		{"Namespace", "", "tunnel"},
		{"ServiceAccount", "tunnel", "tunnel-gateway"},
		{"Deployment", "tunnel", "tunnel-gateway"},
		{"ConfigMap", "tunnel", "tunnel-gateway"},
		{"NetworkPolicy", "tunnel", "default-deny"},
		{"NetworkPolicy", "tunnel", "tunnel-gateway"},
		{"Role", "tunnel", "tunnel-key-rotator"},
		{"RoleBinding", "tunnel", "tunnel-key-rotators"},
	}
	relay := []obj{
		{"Namespace", "", "relay"},
		{"ServiceAccount", "relay", "relay"},
		{"Deployment", "relay", "relay"},
		{"Service", "relay", "relay"},
		{"PersistentVolumeClaim", "relay", "relay-data"},
		{"ConfigMap", "relay", "relay-workers"},
		{"ConfigMap", "relay", "relay-producers"},
		{"NetworkPolicy", "relay", "default-deny"},
		{"NetworkPolicy", "relay", "relay"},
	}
	bunny := []obj{
		{"Namespace", "", "bunny"},
		{"ServiceAccount", "bunny", "bunny"},
		{"Deployment", "bunny", "bunny"},
		{"PodDisruptionBudget", "bunny", "bunny"},
		{"NetworkPolicy", "bunny", "default-deny"},
		{"NetworkPolicy", "bunny", "bunny"},
	}
	forward := []obj{
		{"Service", "tunnel", "tunnel-gateway"},
		{"NetworkPolicy", "tunnel", "tunnel-gateway-forward"},
	}
	lb := obj{"Service", "tunnel", "tunnel-gateway-wireguard"}
	// HA: the one gateway's Deployment and ConfigMap become one per
	// replica, under a PodDisruptionBudget.
	ha := slices.Concat(slices.DeleteFunc(slices.Clone(gatewayBase), func(o obj) bool { return o.kind == "Deployment" || o.kind == "ConfigMap" }), []obj{
		{"Deployment", "tunnel", "tunnel-gateway-a"}, {"ConfigMap", "tunnel", "tunnel-gateway-a"},
		{"Deployment", "tunnel", "tunnel-gateway-b"}, {"ConfigMap", "tunnel", "tunnel-gateway-b"},
		{"PodDisruptionBudget", "tunnel", "tunnel-gateway"},
	})
	tests := []struct {
		dir     string
		want    []obj
		lbs     int
		objects int
	}{
		{"eks", slices.Concat(gatewayBase, relay), 0, 17},
		{"aks", slices.Concat(gatewayBase, bunny, forward, []obj{lb}), 1, 18},
		{"alt/eks-listens", slices.Concat(gatewayBase, relay, []obj{lb}), 1, 18},
		{"alt/aks-dials", slices.Concat(gatewayBase, bunny, forward), 0, 17},
		{"alt/eks-postgres", slices.Concat(gatewayBase, slices.DeleteFunc(slices.Clone(relay), func(o obj) bool { return o.kind == "PersistentVolumeClaim" }),
			[]obj{{"PodDisruptionBudget", "relay", "relay"}, {"NetworkPolicy", "relay", "relay-postgres"}}), 0, 18},
		{"alt/eks-ha", slices.Concat(ha, relay), 0, 20},
		{"alt/aks-ha", slices.Concat(ha, bunny, forward, []obj{{"Service", "tunnel", "tunnel-gateway-wireguard-a"}, {"Service", "tunnel", "tunnel-gateway-wireguard-b"},
			{"Service", "tunnel", "tunnel-gateway-a"}, {"Service", "tunnel", "tunnel-gateway-b"}}), 2, 24},
	}
	for _, tt := range tests {
		t.Run(tt.dir, func(t *testing.T) {
			began := time.Now()
			b := build(t, tt.dir)
			t.Logf("%d objects, built and decoded in %v", len(b.objs), time.Since(began).Round(time.Millisecond))
			for _, w := range tt.want {
				if !b.has(w.kind, w.ns, w.name) {
					t.Errorf("no %s %s/%s", w.kind, w.ns, w.name)
				}
			}
			lbs := 0
			for _, s := range b.services() {
				if s.Spec.Type == corev1.ServiceTypeLoadBalancer {
					lbs++
				}
			}
			if lbs != tt.lbs {
				t.Errorf("%d load balancer Services, want %d (only the side that listens has them, one per gateway)", lbs, tt.lbs)
			}
			if len(b.objs) != tt.objects {
				t.Errorf("%d objects, want %d: something was added or lost", len(b.objs), tt.objects)
			}
			for _, o := range b.objs {
				switch o := o.(type) {
				case *corev1.Secret:
					t.Errorf("Secret %s/%s in the overlay: keys are created with kubectl and never committed", o.Namespace, o.Name)
				case *corev1.Service:
					if o.Spec.Type == corev1.ServiceTypeLoadBalancer && len(o.Spec.LoadBalancerSourceRanges) == 0 {
						t.Errorf("Service %s is open to the whole internet", o.Name)
					}
					if o.Spec.Type == corev1.ServiceTypeNodePort {
						t.Errorf("Service %s is a NodePort", o.Name)
					}
				}
				if m := objMeta(o); m.ns == "" && o.GetObjectKind().GroupVersionKind().Kind != "Namespace" {
					t.Errorf("%s %s has no namespace", o.GetObjectKind().GroupVersionKind().Kind, m.name)
				}
			}
		})
	}
}

// The strict decoder is strict: an unknown field in a rendered object is
// an error, not silently dropped.
func TestStrictDecodingRefusesUnknownFields(t *testing.T) {
	b := build(t, "eks")
	for i, o := range b.objs {
		if _, ok := o.(*appsv1.Deployment); !ok {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal(b.json[i], &m); err != nil {
			t.Fatal(err)
		}
		c := m["spec"].(map[string]any)["template"].(map[string]any)["spec"].(map[string]any)["containers"].([]any)[0].(map[string]any)
		c["bogusField"] = true
		bad, _ := json.Marshal(m)
		_, err := decodeStrict(bad)
		if err == nil || !strings.Contains(err.Error(), `unknown field "spec.template.spec.containers[0].bogusField"`) {
			t.Fatalf("decoding a Deployment with an unknown field: %v, want a strict decoding error naming it", err)
		}
		return
	}
	t.Fatal("no Deployment in the eks overlay")
}

// pod is a pod template of a Deployment.
type pod struct {
	ns, name string
	labels   map[string]string
	spec     *corev1.PodSpec
	d        *appsv1.Deployment
}

func (b *bundle) pods() []pod {
	var out []pod
	for _, d := range b.deployments() {
		out = append(out, pod{ns: d.Namespace, name: d.Name, labels: d.Spec.Template.Labels, spec: &d.Spec.Template.Spec, d: d})
	}
	return out
}

// ours says whether a container runs the project's image.
func ours(c *corev1.Container) bool { return strings.HasPrefix(c.Image, "tunnel:") }

// Every pod template meets Pod Security "restricted", and what the issue
// adds to it: a fixed non-root UID (the image's), a read-only root
// filesystem, no init containers, requests and limits, probes, no
// service account token.
func TestPodSecurity(t *testing.T) {
	for _, o := range overlays {
		b := build(t, o.dir)
		for _, p := range b.pods() {
			t.Run(o.dir+"/"+p.name, func(t *testing.T) {
				for _, msg := range restrictedViolations(p.spec) {
					t.Error(msg)
				}
				d := p.d
				if d.Spec.Selector == nil || !labels.SelectorFromSet(d.Spec.Selector.MatchLabels).Matches(labels.Set(p.labels)) {
					t.Errorf("selector %v does not match the template's labels %v", d.Spec.Selector, p.labels)
				}
				single := p.name == "relay" && !onPostgres(p.spec) || isGateway(p.labels)
				if single && (d.Spec.Replicas == nil || *d.Spec.Replicas != 1 || d.Spec.Strategy.Type != appsv1.RecreateDeploymentStrategyType) {
					t.Errorf("%s must run exactly one pod at a time (replicas 1, strategy Recreate): relay is a single writer, a gateway's key one peer", p.name)
				}
				if p.name == "relay" && onPostgres(p.spec) && (d.Spec.Replicas == nil || *d.Spec.Replicas < 2 || len(p.spec.TopologySpreadConstraints) == 0) {
					t.Errorf("relay on PostgreSQL runs one replica or without topology spread: it is there to survive a node")
				}
			})
		}
	}
}

func restrictedViolations(spec *corev1.PodSpec) []string {
	var v []string
	bad := func(format string, args ...any) { v = append(v, fmt.Sprintf(format, args...)) }
	if spec.HostNetwork || spec.HostPID || spec.HostIPC {
		bad("host namespaces: network %v pid %v ipc %v", spec.HostNetwork, spec.HostPID, spec.HostIPC)
	}
	if len(spec.InitContainers) > 0 || len(spec.EphemeralContainers) > 0 {
		bad("init or ephemeral containers: %d, %d", len(spec.InitContainers), len(spec.EphemeralContainers))
	}
	if spec.AutomountServiceAccountToken == nil || *spec.AutomountServiceAccountToken {
		bad("automountServiceAccountToken is not false: nothing here talks to the API server")
	}
	psc := spec.SecurityContext
	if psc == nil {
		return append(v, "no pod securityContext")
	}
	if psc.RunAsNonRoot == nil || !*psc.RunAsNonRoot {
		bad("pod runAsNonRoot is not true")
	}
	if psc.RunAsUser == nil || *psc.RunAsUser != image.UID || psc.RunAsGroup == nil || *psc.RunAsGroup != image.GID {
		bad("pod runAsUser/runAsGroup are not the image's fixed %d:%d", image.UID, image.GID)
	}
	if psc.SeccompProfile == nil || psc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
		bad("pod seccompProfile is not RuntimeDefault")
	}
	if len(psc.Sysctls) > 0 {
		bad("sysctls %v", psc.Sysctls)
	}
	for _, vol := range spec.Volumes {
		if vol.ConfigMap == nil && vol.Secret == nil && vol.EmptyDir == nil && vol.PersistentVolumeClaim == nil {
			bad("volume %s is of a type restricted does not allow, or that we do not need", vol.Name)
		}
		if vol.Secret != nil && (vol.Secret.DefaultMode == nil || *vol.Secret.DefaultMode != 0o400) {
			bad("Secret volume %s: defaultMode is not 0400", vol.Name)
		}
	}
	for i := range spec.Containers {
		c := &spec.Containers[i]
		sc := c.SecurityContext
		if sc == nil {
			bad("container %s: no securityContext", c.Name)
			continue
		}
		if sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
			bad("container %s: allowPrivilegeEscalation is not false", c.Name)
		}
		if sc.Privileged != nil && *sc.Privileged {
			bad("container %s: privileged", c.Name)
		}
		if sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
			bad("container %s: readOnlyRootFilesystem is not true", c.Name)
		}
		uid := int64(image.UID)
		if c.Name == "handler" {
			uid = image.HandlerUID
		}
		if sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot || sc.RunAsUser == nil || *sc.RunAsUser != uid {
			bad("container %s: not runAsNonRoot with the fixed UID %d", c.Name, uid)
		}
		if sc.Capabilities == nil || !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) || len(sc.Capabilities.Add) > 0 {
			bad("container %s: capabilities %v: want drop [ALL] and nothing added (no NET_ADMIN: the netstack needs none)", c.Name, sc.Capabilities)
		}
		if sc.SeccompProfile == nil || sc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
			bad("container %s: seccompProfile is not RuntimeDefault", c.Name)
		}
		for _, p := range c.Ports {
			if p.HostPort != 0 {
				bad("container %s: hostPort %d", c.Name, p.HostPort)
			}
		}
		for _, r := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
			req, lim := c.Resources.Requests[r], c.Resources.Limits[r]
			if req.IsZero() || lim.IsZero() || req.Cmp(lim) > 0 {
				bad("container %s: %s request %v limit %v: want both, request <= limit", c.Name, r, req.String(), lim.String())
			}
		}
		if c.LivenessProbe == nil || c.ReadinessProbe == nil {
			bad("container %s: missing liveness or readiness probe", c.Name)
		}
		if ours(c) {
			if _, ok := image.Commands()[strings.TrimPrefix(commandOf(c), image.BinDir+"/")]; !ok || !strings.HasPrefix(commandOf(c), image.BinDir+"/") {
				bad("container %s: command %v does not name a binary in the image's %s", c.Name, c.Command, image.BinDir)
			}
		}
	}
	return v
}

// commandOf is the binary a container runs; "" when it names none.
func commandOf(c *corev1.Container) string {
	if len(c.Command) == 0 {
		return ""
	}
	return c.Command[0]
}

// adminPort checks that a container's liveness and readiness probes are
// /healthz and /readyz on its admin port, that Prometheus is told to
// scrape that port, and returns it.
func checkAdmin(t *testing.T, p pod, c *corev1.Container, port int) {
	t.Helper()
	num := func(ip intstr.IntOrString) int {
		if ip.Type == intstr.Int {
			return ip.IntValue()
		}
		for _, cp := range c.Ports {
			if cp.Name == ip.StrVal {
				return int(cp.ContainerPort)
			}
		}
		t.Errorf("container %s: no port named %q", c.Name, ip.StrVal)
		return -1
	}
	for _, pr := range []struct {
		name  string
		probe *corev1.Probe
		path  string
	}{{"liveness", c.LivenessProbe, "/healthz"}, {"readiness", c.ReadinessProbe, "/readyz"}, {"startup", c.StartupProbe, "/healthz"}} {
		if pr.probe == nil {
			if pr.name != "startup" {
				t.Errorf("container %s: no %s probe", c.Name, pr.name)
			}
			continue
		}
		g := pr.probe.HTTPGet
		if g == nil || g.Path != pr.path || num(g.Port) != port {
			t.Errorf("container %s: %s probe %+v, want GET %s on admin port %d", c.Name, pr.name, g, pr.path, port)
		}
	}
	a := p.d.Spec.Template.Annotations
	if a["prometheus.io/scrape"] != "true" || a["prometheus.io/port"] != strconv.Itoa(port) || a["prometheus.io/path"] != "/metrics" {
		t.Errorf("prometheus annotations %v, want scrape of :%d/metrics", a, port)
	}
	found := false
	for _, cp := range c.Ports {
		if int(cp.ContainerPort) == port && cp.Protocol == corev1.ProtocolTCP {
			found = true
		}
	}
	if !found {
		t.Errorf("container %s does not declare its admin port %d/TCP", c.Name, port)
	}
}

// isGateway says whether a pod template is a tunnel gateway's.
func isGateway(l map[string]string) bool { return l["app.kubernetes.io/name"] == "tunnel-gateway" }

// gw is one gateway replica of an overlay: its pod, its config as the pod
// reads it, and the key Secret it mounts.
type gw struct {
	pod    pod
	cfg    *config.Config
	text   string
	suffix string // "" for the single gateway, "-a", "-b" for HA replicas
	secret string
}

// gateways returns every gateway replica of an overlay, in name order:
// the Deployment tunnel-gateway, or one tunnel-gateway-<r> per replica,
// each mounting the key Secret tunnel-keys<suffix>.
func gateways(t testing.TB, b *bundle) []gw {
	t.Helper()
	var out []gw
	for _, p := range b.pods() {
		if p.ns != "tunnel" || !isGateway(p.labels) {
			continue
		}
		suffix, ok := strings.CutPrefix(p.name, "tunnel-gateway")
		if !ok {
			t.Fatalf("%s: gateway Deployment %s is not named tunnel-gateway[-replica]", b.dir, p.name)
		}
		cfg, text := gatewayConfig(t, b, p)
		out = append(out, gw{pod: p, cfg: cfg, text: text, suffix: suffix, secret: "tunnel-keys" + suffix})
	}
	if len(out) == 0 {
		t.Fatalf("%s: no gateway Deployment", b.dir)
	}
	slices.SortFunc(out, func(a, b gw) int { return strings.Compare(a.pod.name, b.pod.name) })
	return out
}

// gatewayOf returns the gateway replica that runs as pod p.
func gatewayOf(t testing.TB, b *bundle, p pod) gw {
	t.Helper()
	for _, g := range gateways(t, b) {
		if g.pod.name == p.name {
			return g
		}
	}
	t.Fatalf("%s: %s is not a gateway", b.dir, p.name)
	return gw{}
}

// gatewayConfig returns a gateway pod's config as the pod would read it,
// checked as `tunnel config check --offline --allow-placeholders` checks
// it: the shipped files mark each value to edit with REPLACE.
func gatewayConfig(t testing.TB, b *bundle, p pod) (*config.Config, string) {
	t.Helper()
	c := container(t, p.spec, "gateway")
	if want := image.BinDir + "/tunnel-gateway"; len(c.Command) != 1 || c.Command[0] != want {
		t.Fatalf("gateway container command %v: want [%s], the lean gateway binary", c.Command, want)
	}
	path, ok := flag(c.Args, "config")
	if !ok {
		t.Fatalf("gateway args %v have no --config", c.Args)
	}
	text := b.data(t, p.ns, p.spec, c, path)
	f := filepath.Join(t.TempDir(), "gateway.yaml")
	if err := os.WriteFile(f, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.LoadTemplate(f)
	if err != nil {
		t.Fatalf("%s: the gateway config fails `tunnel config check --offline --allow-placeholders`: %v", b.dir, err)
	}
	return cfg, text
}

// The gateway config in each ConfigMap passes the gateway's own offline
// check of a template, and also the full check once the key Secret's
// items exist as `tunnel keys generate` writes them (private.key,
// peer.<name>.pub) under the Secret's mount and its REPLACE values are
// edited. Each gateway has one peer per gateway of the other cluster
// (named for its side and replica: eks, or eks-a and eks-b), and carries
// exactly one port to them, relay's UDP port, and its files are all on
// the pod's volumes.
func TestGatewayConfig(t *testing.T) {
	for _, o := range overlays {
		for _, g := range gateways(t, build(t, o.dir)) {
			t.Run(o.dir+"/"+g.pod.name, func(t *testing.T) {
				cfg, text, p := g.cfg, g.text, g.pod
				c := container(t, p.spec, "gateway")
				other := map[string]string{"eks": "aks", "aks": "eks"}[o.side]
				var want, names []string
				for _, pg := range gateways(t, build(t, o.pair)) {
					want = append(want, other+pg.suffix)
				}
				for _, peer := range cfg.Peers {
					names = append(names, peer.Name)
					if peer.PublicKeyFile == "" || peer.PublicKey != "" {
						t.Errorf("peer %q (key file %q, inline %q): its key must be read from the key Secret so that `tunnel keys rotate` can replace it", peer.Name, peer.PublicKeyFile, peer.PublicKey)
					}
				}
				if !slices.Equal(names, want) {
					t.Fatalf("peers %v, want %v: one per gateway of %s", names, want, o.pair)
				}
				switch o.side {
				case "eks":
					if len(cfg.Expose) != 1 || len(cfg.Forward) != 0 {
						t.Fatalf("%d expose and %d forward rules: the EKS side exposes exactly one port", len(cfg.Expose), len(cfg.Forward))
					}
					e := cfg.Expose[0]
					if e.Protocol != config.UDP || e.Port != 7443 || !slices.Equal(e.Peers, names) {
						t.Errorf("expose %+v: want relay's udp/7443 to peers %v alone", e, names)
					}
					svc, sp, err := build(t, o.dir).serviceFor(e.Target)
					if err != nil {
						t.Fatalf("expose target %s: %v", e.Target, err)
					}
					if sp.Protocol != corev1.ProtocolUDP || svc.Name != "relay" {
						t.Errorf("expose target %s is %s %s/%s", e.Target, sp.Protocol, svc.Namespace, svc.Name)
					}
				case "aks":
					if len(cfg.Forward) != 1 || len(cfg.Expose) != 0 {
						t.Fatalf("%d forward and %d expose rules: the AKS side forwards exactly one port and exposes none", len(cfg.Forward), len(cfg.Expose))
					}
					f := cfg.Forward[0]
					var ups []string
					for _, u := range f.Upstreams {
						ups = append(ups, u.Peer)
						if u.To.Port() != 7443 {
							t.Errorf("upstream %s: want port 7443", u)
						}
					}
					if f.Protocol != config.UDP || !slices.Equal(ups, names) {
						t.Errorf("forward %+v: want udp to upstreams %v, in that order", f, names)
					}
				}
				// Every file the gateway reads is on a volume: the config on
				// its ConfigMap, keys on its key Secret with the item names
				// the key stores and `tunnel keys rotate` use.
				mustSecretItem(t, p.spec, c, cfg.Interface.PrivateKeyFile, g.secret, keys.PrivateKeyFile)
				for _, peer := range cfg.Peers {
					mustSecretItem(t, p.spec, c, peer.PublicKeyFile, g.secret, keys.PeerKeyFile(peer.Name))
				}
				// The read-only UAPI socket (wg show, tunnel status) needs a
				// writable directory on a read-only root filesystem.
				dir := cfg.Interface.UAPIDir
				if dir == "" {
					dir = config.DefaultUAPIDir
				}
				uapi, err := resolve(p.spec, c, filepath.Join(dir, cfg.Interface.Name+".sock"))
				if dir == config.Disabled || err != nil || uapi.volume.EmptyDir == nil || uapi.mount.ReadOnly {
					t.Errorf("the UAPI socket directory %s must be a writable emptyDir (%v)", dir, err)
				}
				checkAdmin(t, p, c, portOf(t, cfg.Admin.Listen))

				// The full check, with keys made as `tunnel keys generate`
				// makes them, in a directory that stands for the Secret's
				// mount.
				keysDir := t.TempDir()
				if _, err := keys.WriteKeyPair(keysDir, false); err != nil {
					t.Fatal(err)
				}
				peerKeys := map[string]keys.PublicKey{}
				for _, peer := range cfg.Peers {
					other, err := keys.GeneratePrivateKey()
					if err != nil {
						t.Fatal(err)
					}
					peerKeys[peer.Name] = other.Public()
					if err := os.WriteFile(filepath.Join(keysDir, keys.PeerKeyFile(peer.Name)), keys.FormatPeerKeys(other.Public()), 0o644); err != nil {
						t.Fatal(err)
					}
				}
				mount := filepath.Dir(cfg.Interface.PrivateKeyFile) + "/"
				full := filepath.Join(t.TempDir(), "gateway.yaml")
				edited := strings.ReplaceAll(strings.ReplaceAll(text, mount, keysDir+"/"), yamlcheck.Placeholder, "example")
				if err := os.WriteFile(full, []byte(edited), 0o644); err != nil {
					t.Fatal(err)
				}
				if strings.Contains(text, yamlcheck.Placeholder) {
					if _, err := config.Parse([]byte(text)); err == nil || !strings.Contains(err.Error(), "is a placeholder") {
						t.Errorf("the unedited config passes `tunnel config check --offline`: %v", err)
					}
				}
				loaded, err := config.Load(full)
				if err != nil {
					t.Fatalf("config check with the Secret's items: %v", err)
				}
				if _, err := keys.LoadPrivateKey(loaded.Interface.PrivateKeyFile); err != nil {
					t.Fatalf("the gateway's private key as written by `tunnel keys generate`: %v", err)
				}
				for _, peer := range loaded.Peers {
					if peer.Key != peerKeys[peer.Name] {
						t.Errorf("peer key read from %s is not the one written", peer.PublicKeyFile)
					}
				}
			})
		}
	}
}

func mustSecretItem(t *testing.T, spec *corev1.PodSpec, c *corev1.Container, path, secret, item string) {
	t.Helper()
	f, err := resolve(spec, c, path)
	if err != nil {
		t.Errorf("%s: %v", path, err)
		return
	}
	if f.volume.Secret == nil || f.volume.Secret.SecretName != secret || f.key != item || len(f.volume.Secret.Items) > 0 || !f.mount.ReadOnly {
		t.Errorf("%s is not item %q of Secret %s mounted read-only (volume %s)", path, item, secret, f.volume.Name)
	}
}

// The gateways of the two clusters agree, for every pair of one EKS and
// one AKS gateway: each has the other as a peer allowing exactly the
// other's address, the AKS forward has the EKS gateway's tunnel address
// and exposed port as an upstream, exactly one side dials (with a
// keepalive) to the port the other listens on, and the listening
// gateway's own load balancer carries that port to its pod alone.
func TestGatewayPairs(t *testing.T) {
	for _, o := range overlays {
		if o.side != "eks" {
			continue
		}
		eb, ab := build(t, o.dir), build(t, o.pair)
		for _, e := range gateways(t, eb) {
			for _, a := range gateways(t, ab) {
				t.Run(o.dir+"/"+e.pod.name+"+"+o.pair+"/"+a.pod.name, func(t *testing.T) {
					checkPair(t, eb, ab, e, a)
				})
			}
		}
	}
}

// peerNamed returns a config's peer of that name, or fails.
func peerNamed(t testing.TB, cfg *config.Config, name string) *config.Peer {
	t.Helper()
	return named(t, "peer", cfg.Peers, func(p *config.Peer) string { return p.Name }, name)
}

func checkPair(t *testing.T, eb, ab *bundle, e, a gw) {
	eks, aks := e.cfg, a.cfg
	ea, aa := eks.Interface.Addresses, aks.Interface.Addresses
	if len(ea) != 1 || len(aa) != 1 {
		t.Fatalf("tunnel addresses %v, %v: want one each", ea, aa)
	}
	ep, ap := peerNamed(t, eks, "aks"+a.suffix), peerNamed(t, aks, "eks"+e.suffix)
	if !slices.Equal(ep.AllowedIPs, []netip.Prefix{netip.PrefixFrom(aa[0], 32)}) || !slices.Equal(ap.AllowedIPs, []netip.Prefix{netip.PrefixFrom(ea[0], 32)}) {
		t.Errorf("allowedIPs %v and %v: each must be exactly the other's address", ep.AllowedIPs, ap.AllowedIPs)
	}
	if want := (config.Upstream{Peer: ap.Name, To: netip.AddrPortFrom(ea[0], eks.Expose[0].Port)}); !slices.Contains(aks.Forward[0].Upstreams, want) {
		t.Errorf("AKS forwards to %v, none of them %v, which the EKS gateway exposes", aks.Forward[0].Upstreams, want)
	}
	dialer, dp, listener, lp, lb, lg := eks, ep, aks, ap, ab, a
	if ep.Endpoint == "" {
		dialer, dp, listener, lp, lb, lg = aks, ap, eks, ep, eb, e
	}
	if dp.Endpoint == "" || dp.PersistentKeepalive == 0 || dialer.Interface.ListenPort != 0 {
		t.Errorf("the dialing side: endpoint %q keepalive %v listenPort %d", dp.Endpoint, dp.PersistentKeepalive, dialer.Interface.ListenPort)
	}
	if lp.Endpoint != "" || listener.Interface.ListenPort == 0 {
		t.Errorf("the listening side: endpoint %q listenPort %d", lp.Endpoint, listener.Interface.ListenPort)
	}
	if portOf(t, dp.Endpoint) != listener.Interface.ListenPort {
		t.Errorf("dialing port %s, listening port %d", dp.Endpoint, listener.Interface.ListenPort)
	}
	// The listening gateway's load balancer: the one that selects its pod,
	// and no other gateway's (WireGuard peers need distinct endpoints).
	var svc *corev1.Service
	for _, s := range lb.services() {
		if s.Spec.Type == corev1.ServiceTypeLoadBalancer && labels.SelectorFromSet(s.Spec.Selector).Matches(labels.Set(lg.pod.labels)) {
			if svc != nil {
				t.Errorf("load balancers %s and %s both reach %s", svc.Name, s.Name, lg.pod.name)
			}
			svc = s
		}
	}
	if svc == nil {
		t.Fatalf("the listening gateway %s/%s has no load balancer", lb.dir, lg.pod.name)
	}
	for _, other := range gateways(t, lb) {
		if other.pod.name != lg.pod.name && labels.SelectorFromSet(svc.Spec.Selector).Matches(labels.Set(other.pod.labels)) {
			t.Errorf("load balancer %s reaches both %s and %s: each replica needs its own endpoint", svc.Name, lg.pod.name, other.pod.name)
		}
	}
	d := lg.pod.d
	sp := svc.Spec.Ports
	if len(sp) != 1 || sp[0].Protocol != corev1.ProtocolUDP || int(sp[0].Port) != listener.Interface.ListenPort ||
		targetPort(t, &d.Spec.Template.Spec, "gateway", sp[0].TargetPort, corev1.ProtocolUDP) != listener.Interface.ListenPort ||
		svc.Spec.ExternalTrafficPolicy != corev1.ServiceExternalTrafficPolicyLocal {
		t.Errorf("load balancer %s: ports %+v, policy %s: want exactly UDP %d to the gateway pod, externalTrafficPolicy Local", svc.Name, sp, svc.Spec.ExternalTrafficPolicy, listener.Interface.ListenPort)
	}
	wantAnn := map[string][]string{
		"aks": {"service.beta.kubernetes.io/azure-dns-label-name"},
		"eks": {"service.beta.kubernetes.io/aws-load-balancer-type=external", "service.beta.kubernetes.io/aws-load-balancer-nlb-target-type=ip", "service.beta.kubernetes.io/aws-load-balancer-scheme=internet-facing", "service.beta.kubernetes.io/aws-load-balancer-healthcheck-port=9090"},
	}
	side := "aks"
	if lb == eb {
		side = "eks"
	}
	for _, an := range wantAnn[side] {
		k, v, hasV := strings.Cut(an, "=")
		if got, ok := svc.Annotations[k]; !ok || (hasV && got != v) {
			t.Errorf("load balancer annotation %s = %q, want %q", k, got, v)
		}
	}
	// The dialer's endpoint names this load balancer's DNS label.
	if label, ok := svc.Annotations["service.beta.kubernetes.io/azure-dns-label-name"]; ok && !strings.HasPrefix(dp.Endpoint, label+".") {
		t.Errorf("peer %s dials %s, not load balancer %s's DNS label %s", dp.Name, dp.Endpoint, svc.Name, label)
	}
	// The load balancer admits the same addresses the listening
	// gateway's NetworkPolicy admits on WireGuard's port.
	np := lb.policy(t, "tunnel", "tunnel-gateway")
	var cidrs []string
	for _, r := range np.Spec.Ingress {
		for _, port := range r.Ports {
			if port.Port != nil && port.Port.IntValue() == listener.Interface.ListenPort {
				for _, f := range r.From {
					if f.IPBlock != nil {
						cidrs = append(cidrs, f.IPBlock.CIDR)
					}
				}
			}
		}
	}
	if !slices.Equal(cidrs, svc.Spec.LoadBalancerSourceRanges) {
		t.Errorf("NetworkPolicy admits %v on udp/%d, the load balancer %v: keep them the same", cidrs, listener.Interface.ListenPort, svc.Spec.LoadBalancerSourceRanges)
	}
}

func (b *bundle) policy(t testing.TB, ns, name string) *networkingv1.NetworkPolicy {
	t.Helper()
	for _, p := range b.policies() {
		if p.Namespace == ns && p.Name == name {
			return p
		}
	}
	t.Fatalf("%s: no NetworkPolicy %s/%s", b.dir, ns, name)
	return nil
}

// targetPort resolves a Service's targetPort to a container port of the
// given protocol, or fails.
func targetPort(t testing.TB, spec *corev1.PodSpec, cname string, tp intstr.IntOrString, proto corev1.Protocol) int {
	t.Helper()
	c := container(t, spec, cname)
	for _, cp := range c.Ports {
		if cp.Protocol == proto && ((tp.Type == intstr.String && cp.Name == tp.StrVal) || (tp.Type == intstr.Int && int(cp.ContainerPort) == tp.IntValue())) {
			return int(cp.ContainerPort)
		}
	}
	t.Errorf("container %s has no %s port %s", cname, proto, tp.String())
	return -1
}

// relay's flags name its files on its volumes, its workers file parses
// as relay parses it, its ports are the Service's and the gateway's
// target, and its database is on the PersistentVolumeClaim.
func TestRelay(t *testing.T) {
	for _, o := range overlays {
		if o.side != "eks" {
			continue
		}
		t.Run(o.dir, func(t *testing.T) {
			b := build(t, o.dir)
			d := b.deployment(t, "relay", "relay")
			spec := &d.Spec.Template.Spec
			c := container(t, spec, "relay")
			if len(c.Args) == 0 || c.Args[0] != "serve" {
				t.Fatalf("relay args %v", c.Args)
			}
			get := func(name string) string {
				v, ok := flag(c.Args, name)
				if !ok {
					t.Fatalf("relay args %v lack --%s", c.Args, name)
				}
				return v
			}
			mustSecretItem(t, spec, c, get("identity-cert"), "relay-identity", keys.IdentityCertFile)
			mustSecretItem(t, spec, c, get("identity-key"), "relay-identity", keys.IdentityKeyFile)
			if onPostgres(spec) {
				// The DSN (with its password) from a Secret; no volume,
				// and a PodDisruptionBudget so drains go one at a time.
				mustSecretItem(t, spec, c, get("store-file"), "relay-store", "dsn")
				if b.has("PersistentVolumeClaim", "relay", "relay-data") || !b.has("PodDisruptionBudget", "relay", "relay") {
					t.Error("relay on PostgreSQL keeps a volume, or has no PodDisruptionBudget")
				}
			} else if db, err := resolve(spec, c, get("db")); err != nil || db.volume.PersistentVolumeClaim == nil || !b.has("PersistentVolumeClaim", "relay", db.volume.PersistentVolumeClaim.ClaimName) || db.mount.ReadOnly {
				t.Errorf("--db %s is not on the relay's PersistentVolumeClaim (%v)", get("db"), err)
			}
			if spec.SecurityContext.FSGroup == nil {
				t.Error("relay has no fsGroup: UID 65532 could not create its database on a fresh volume")
			}
			w, err := resolve(spec, c, get("workers"))
			if err != nil || w.volume.ConfigMap == nil || w.key != "" {
				t.Fatalf("--workers %s is not a mounted ConfigMap directory (%v)", get("workers"), err)
			}
			cm := b.configMap("relay", w.volume.ConfigMap.Name)
			if cm == nil || len(cm.Data) != 1 {
				t.Fatalf("workers ConfigMap %s missing or not one file", w.volume.ConfigMap.Name)
			}
			for name, data := range cm.Data {
				ac, err := auth.ParseTemplate(name, []byte(data))
				if err != nil {
					t.Fatalf("workers file: %v", err)
				}
				if _, err := auth.Parse(name, []byte(data)); err == nil || !strings.Contains(err.Error(), "is a placeholder") {
					t.Errorf("the unedited workers file passes `relay workers check`: %v", err)
				}
				if len(ac.Workers) != 1 || !ac.Workers[0].May("default", auth.Lease) {
					t.Errorf("workers file: want one worker, bunny, allowed to lease from queue default")
				}
			}
			pc, err := producers.Parse([]byte(b.data(t, "relay", spec, c, get("producers"))))
			if err != nil {
				t.Fatalf("producers file: %v", err)
			}
			for _, p := range pc.Producers {
				if len(p.Pins) == 0 && len(p.Tokens) == 0 {
					t.Errorf("producer %s has no credentials", p.Name)
				}
			}
			quic, http, adm := portOf(t, get("listen")), portOf(t, get("http")), portOf(t, get("admin"))
			if targetPort(t, spec, "relay", intstr.FromInt(quic), corev1.ProtocolUDP) != quic || targetPort(t, spec, "relay", intstr.FromInt(http), corev1.ProtocolTCP) != http ||
				targetPort(t, spec, "relay", intstr.FromInt(adm), corev1.ProtocolTCP) != adm {
				t.Errorf("relay's container ports do not declare --listen %d/udp, --http %d/tcp and --admin %d/tcp", quic, http, adm)
			}
			if http == adm {
				t.Errorf("--http and --admin share port %d", http)
			}
			_, sp, err := b.serviceFor(fmt.Sprintf("relay.relay.svc.cluster.local:%d", quic))
			if err != nil || sp.Protocol != corev1.ProtocolUDP || targetPort(t, spec, "relay", sp.TargetPort, corev1.ProtocolUDP) != quic {
				t.Errorf("relay Service does not carry udp/%d to relay's QUIC port (%v)", quic, err)
			}
			checkAdmin(t, pod{ns: d.Namespace, name: d.Name, spec: spec, d: d}, c, adm)
			// Monitoring reaches the admin port alone; producers the API
			// port alone.
			for _, np := range b.policies() {
				if np.Namespace != "relay" || !selects(&np.Spec.PodSelector, labels.Set(d.Spec.Template.Labels)) {
					continue
				}
				for _, r := range np.Spec.Ingress {
					var ports []int
					for _, port := range r.Ports {
						ports = append(ports, portNum(port))
					}
					for _, peer := range r.From {
						ns := peer.NamespaceSelector
						switch {
						case ns != nil && ns.MatchLabels["kubernetes.io/metadata.name"] == "monitoring":
							if !slices.Equal(ports, []int{adm}) {
								t.Errorf("%s: monitoring may reach relay on %v; want the admin port %d alone", np.Name, ports, adm)
							}
						case ns != nil && ns.MatchLabels["relay.tunnel.dev/producers"] == "true":
							if !slices.Equal(ports, []int{http}) {
								t.Errorf("%s: producers may reach relay on %v; want the API port %d alone", np.Name, ports, http)
							}
						}
					}
				}
			}
		})
	}
}

// onPostgres reports whether relay's pod keeps its jobs in PostgreSQL
// (--store-file) rather than in a bbolt file on a volume.
func onPostgres(spec *corev1.PodSpec) bool {
	for _, c := range spec.Containers {
		if _, ok := flag(c.Args, "store-file"); ok && c.Name == "relay" {
			return true
		}
	}
	return false
}

// bunnyConfig is bunny's config file as bunny's docs fix it; decoded with
// unknown fields refused.
// addresses is bunny's relay.address: one host:port or a list.
type addresses []string

func (a *addresses) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind == yaml.ScalarNode {
		*a = addresses{n.Value}
		return nil
	}
	var l []string
	if err := n.Decode(&l); err != nil {
		return err
	}
	*a = l
	return nil
}

type bunnyConfig struct {
	Relay struct {
		Address addresses `yaml:"address"`
		Pin     string    `yaml:"pin"`
		PinFile string    `yaml:"pinFile"`
	} `yaml:"relay"`
	Identity struct {
		CertFile string `yaml:"certFile"`
		KeyFile  string `yaml:"keyFile"`
	} `yaml:"identity"`
	Admin struct {
		Listen string `yaml:"listen"`
	} `yaml:"admin"`
	Concurrency   int           `yaml:"concurrency"`
	ShutdownGrace time.Duration `yaml:"shutdownGrace"`
	Queues        []struct {
		Name string `yaml:"name"`
		HTTP *struct {
			URL     string        `yaml:"url"`
			Timeout time.Duration `yaml:"timeout"`
		} `yaml:"http"`
		Exec *struct {
			Command   []string      `yaml:"command"`
			Timeout   time.Duration `yaml:"timeout"`
			MaxOutput string        `yaml:"maxOutput"`
		} `yaml:"exec"`
	} `yaml:"queues"`
}

// bunny's config passes bunny's own parser, and (read again here,
// unknown fields refused) reaches relay through the local
// gateway's forward Service, pins relay, reads its identity from its
// Secret, sends jobs to a handler in its own pod, and is given time to
// drain.
func TestBunny(t *testing.T) {
	for _, o := range overlays {
		if o.side != "aks" {
			continue
		}
		t.Run(o.dir, func(t *testing.T) {
			b := build(t, o.dir)
			d := b.deployment(t, "bunny", "bunny")
			spec := &d.Spec.Template.Spec
			c := container(t, spec, "bunny")
			path, ok := flag(c.Args, "config")
			if len(c.Args) == 0 || c.Args[0] != "run" || !ok {
				t.Fatalf("bunny args %v", c.Args)
			}
			text := b.data(t, "bunny", spec, c, path)
			var bc bunnyConfig
			dec := yaml.NewDecoder(bytes.NewReader([]byte(text)))
			dec.KnownFields(true)
			if err := dec.Decode(&bc); err != nil {
				t.Fatalf("bunny config: %v", err)
			}
			if _, err := bunnyconfig.ParseTemplate([]byte(text)); err != nil {
				t.Fatalf("bunny's own parser refuses its config: %v", err)
			}
			if _, err := bunnyconfig.Parse([]byte(text)); err == nil || !strings.Contains(err.Error(), "relay.pin") {
				t.Errorf("the unedited config passes `bunny config check --offline`: %v", err)
			}
			if _, err := keys.ParsePin(bc.Relay.Pin); err != nil {
				t.Errorf("relay pin: %v", err)
			}
			mustSecretItem(t, spec, c, bc.Identity.CertFile, "bunny-identity", keys.IdentityCertFile)
			mustSecretItem(t, spec, c, bc.Identity.KeyFile, "bunny-identity", keys.IdentityKeyFile)
			// Every address is a ClusterIP Service whose pods are gateways
			// whose forward listener it targets, and every gateway replica
			// is reached by one of them: one Service selecting every replica,
			// or one Service per replica, listed in order.
			reached := map[string]bool{}
			for _, a := range bc.Relay.Address {
				svc, sp, err := b.serviceFor(a)
				if err != nil {
					t.Fatalf("relay.address %s: %v", a, err)
				}
				if svc.Spec.Type != corev1.ServiceTypeClusterIP {
					t.Errorf("the forward Service %s is %s, want ClusterIP", svc.Name, svc.Spec.Type)
				}
				for _, g := range gateways(t, b) {
					if !labels.SelectorFromSet(svc.Spec.Selector).Matches(labels.Set(g.pod.labels)) {
						continue
					}
					reached[g.pod.name] = true
					if sp.Protocol != corev1.ProtocolUDP || targetPort(t, g.pod.spec, "gateway", sp.TargetPort, corev1.ProtocolUDP) != portOf(t, g.cfg.Forward[0].Listen) {
						t.Errorf("relay.address %s does not reach gateway %s's forward listener %s", a, g.pod.name, g.cfg.Forward[0].Listen)
					}
				}
			}
			for _, g := range gateways(t, b) {
				if !reached[g.pod.name] {
					t.Errorf("no relay.address (%v) reaches gateway %s: bunny cannot fail over to it", bc.Relay.Address, g.pod.name)
				}
			}
			checkAdmin(t, pod{ns: d.Namespace, name: d.Name, spec: spec, d: d}, c, portOf(t, bc.Admin.Listen))
			if bc.Concurrency < 1 || bc.ShutdownGrace <= 0 || len(bc.Queues) == 0 {
				t.Errorf("concurrency %d shutdownGrace %v queues %d", bc.Concurrency, bc.ShutdownGrace, len(bc.Queues))
			}
			if g := spec.TerminationGracePeriodSeconds; g == nil || time.Duration(*g)*time.Second <= bc.ShutdownGrace {
				t.Errorf("terminationGracePeriodSeconds %v does not cover bunny's shutdownGrace %v", g, bc.ShutdownGrace)
			}
			for _, q := range bc.Queues {
				if q.HTTP == nil || q.Exec != nil {
					t.Errorf("queue %s: want the http handler (the image has no shell for exec)", q.Name)
					continue
				}
				u, err := url.Parse(q.HTTP.URL)
				if err != nil || u.Hostname() != "127.0.0.1" {
					t.Errorf("queue %s: handler %s is not in the pod (127.0.0.1)", q.Name, q.HTTP.URL)
					continue
				}
				port, _ := strconv.Atoi(u.Port())
				if targetPort(t, spec, "handler", intstr.FromInt(port), corev1.ProtocolTCP) != port {
					t.Errorf("queue %s: no handler container listens on %d", q.Name, port)
				}
			}
			// The handler runs as a user of its own and mounts nothing, so
			// a job cannot read bunny's identity key or config.
			h, bn := container(t, spec, "handler"), container(t, spec, "bunny")
			if h.SecurityContext == nil || h.SecurityContext.RunAsUser == nil || bn.SecurityContext == nil || bn.SecurityContext.RunAsUser == nil ||
				*h.SecurityContext.RunAsUser == *bn.SecurityContext.RunAsUser {
				t.Error("the handler container does not run as a user of its own (runAsUser must differ from bunny's)")
			}
			if len(h.VolumeMounts) != 0 {
				t.Errorf("the handler container mounts %v; it should mount nothing of bunny's", h.VolumeMounts)
			}
			pdb := false
			for _, o := range b.objs {
				if p, ok := o.(*policyv1.PodDisruptionBudget); ok && p.Namespace == "bunny" {
					pdb = labels.SelectorFromSet(p.Spec.Selector.MatchLabels).Matches(labels.Set(d.Spec.Template.Labels)) &&
						p.Spec.MaxUnavailable != nil && p.Spec.MaxUnavailable.IntValue() < int(*d.Spec.Replicas)
				}
			}
			if !pdb {
				t.Error("bunny has no PodDisruptionBudget keeping some of its replicas up")
			}
		})
	}
}

// The key-rotation Role is in the gateways' namespace and names the
// gateways' key Secrets, the ones the pods mount.
func TestRotateRole(t *testing.T) {
	for _, o := range overlays {
		b := build(t, o.dir)
		var secret []string
		for _, g := range gateways(t, b) {
			for _, v := range g.pod.spec.Volumes {
				if v.Secret != nil {
					secret = append(secret, v.Secret.SecretName)
				}
			}
		}
		found := false
		for _, ob := range b.objs {
			if r, ok := ob.(*rbacv1.Role); ok && r.Namespace == "tunnel" {
				for _, rule := range r.Rules {
					if slices.Contains(rule.Resources, "secrets") {
						found = slices.Equal(rule.ResourceNames, secret)
					}
				}
			}
		}
		if !found {
			t.Errorf("%s: the rotation Role does not name exactly the gateways' key Secrets %q", o.dir, secret)
		}
	}
}

// flows is what a pod may do on the network: "in udp/7443", "out tcp/53",
// "out udp/*" (any port).
type flows map[string]bool

func (f flows) add(dir string, proto corev1.Protocol, port int) {
	p := "*"
	if port != 0 {
		p = strconv.Itoa(port)
	}
	f[dir+" "+strings.ToLower(string(proto))+"/"+p] = true
}

func (f flows) String() string { return strings.Join(slices.Sorted(maps.Keys(f)), ", ") }

// needs derives, from the configs the pod mounts, exactly what it must be
// allowed to do on the network.
func needs(t *testing.T, b *bundle, p pod) flows {
	t.Helper()
	f := flows{}
	dns := func(hostport string) {
		host, _, _ := net.SplitHostPort(hostport)
		if _, err := netip.ParseAddr(host); err != nil {
			f.add("out", corev1.ProtocolUDP, 53)
			f.add("out", corev1.ProtocolTCP, 53)
		}
	}
	switch {
	case isGateway(p.labels):
		cfg := gatewayOf(t, b, p).cfg
		f.add("in", corev1.ProtocolTCP, portOf(t, cfg.Admin.Listen))
		if cfg.Interface.ListenPort != 0 {
			f.add("in", corev1.ProtocolUDP, cfg.Interface.ListenPort)
		}
		for _, fw := range cfg.Forward {
			f.add("in", corev1.Protocol(strings.ToUpper(fw.Protocol)), portOf(t, fw.Listen))
		}
		for _, e := range cfg.Expose {
			// NetworkPolicy sees the pod's port, behind the Service.
			svc, sp, err := b.serviceFor(e.Target)
			if err != nil {
				t.Fatal(err)
			}
			var backend *pod
			for _, q := range b.pods() {
				if q.ns == svc.Namespace && labels.SelectorFromSet(svc.Spec.Selector).Matches(labels.Set(q.labels)) {
					backend = &q
				}
			}
			if backend == nil {
				t.Fatalf("expose target %s: Service %s selects no pod", e.Target, svc.Name)
			}
			f.add("out", sp.Protocol, targetPort(t, backend.spec, backend.spec.Containers[0].Name, sp.TargetPort, sp.Protocol))
			dns(e.Target)
		}
		for _, peer := range cfg.Peers {
			if peer.Endpoint != "" {
				f.add("out", corev1.ProtocolUDP, portOf(t, peer.Endpoint))
				dns(peer.Endpoint)
			} else {
				// Replies to a peer that dials us, from behind its NAT.
				f.add("out", corev1.ProtocolUDP, 0)
			}
		}
	case p.name == "relay":
		c := container(t, p.spec, "relay")
		l, _ := flag(c.Args, "listen")
		h, _ := flag(c.Args, "http")
		a, _ := flag(c.Args, "admin")
		f.add("in", corev1.ProtocolUDP, portOf(t, l))
		f.add("in", corev1.ProtocolTCP, portOf(t, h))
		f.add("in", corev1.ProtocolTCP, portOf(t, a))
		if onPostgres(p.spec) {
			// The database's port, at an endpoint name (RDS, Aurora).
			f.add("out", corev1.ProtocolTCP, 5432)
			dns("db.example:5432")
		}
	case p.name == "bunny":
		c := container(t, p.spec, "bunny")
		path, _ := flag(c.Args, "config")
		var bc bunnyConfig
		if err := yaml.Unmarshal([]byte(b.data(t, p.ns, p.spec, c, path)), &bc); err != nil {
			t.Fatal(err)
		}
		f.add("in", corev1.ProtocolTCP, portOf(t, bc.Admin.Listen))
		for _, a := range bc.Relay.Address {
			f.add("out", corev1.ProtocolUDP, portOf(t, a))
			dns(a)
		}
	default:
		t.Fatalf("no model of what %s needs", p.name)
	}
	return f
}

// nsLabels are a namespace's labels as the API server has them.
func nsLabels(b *bundle, ns string) labels.Set {
	l := labels.Set{"kubernetes.io/metadata.name": ns}
	if n := b.namespaces()[ns]; n != nil {
		maps.Copy(l, n.Labels)
	}
	return l
}

func selects(sel *metav1.LabelSelector, set labels.Set) bool {
	s, err := metav1.LabelSelectorAsSelector(sel)
	return err == nil && s.Matches(set)
}

// peerSelects says whether a policy peer selects pod p.
func peerSelects(b *bundle, policyNS string, peer networkingv1.NetworkPolicyPeer, p pod) bool {
	if peer.IPBlock != nil {
		return false
	}
	if peer.NamespaceSelector == nil {
		if p.ns != policyNS {
			return false
		}
	} else if !selects(peer.NamespaceSelector, nsLabels(b, p.ns)) {
		return false
	}
	return peer.PodSelector == nil || selects(peer.PodSelector, labels.Set(p.labels))
}

// Every namespace is default-deny; every NetworkPolicy selects pods that
// exist; every peer it names is a pod of the overlay (or DNS, or
// Prometheus); what each pod may do is exactly what its configs need; and
// each pod-to-pod path is allowed at both ends.
func TestNetworkPolicies(t *testing.T) {
	for _, o := range overlays {
		t.Run(o.dir, func(t *testing.T) {
			b := build(t, o.dir)
			pods := b.pods()
			nss := map[string]bool{}
			for _, p := range pods {
				nss[p.ns] = true
			}
			denied := map[string]bool{}
			for _, np := range b.policies() {
				s := np.Spec
				if len(s.PodSelector.MatchLabels) == 0 && len(s.PodSelector.MatchExpressions) == 0 {
					if len(s.Ingress) > 0 || len(s.Egress) > 0 || !slices.Equal(s.PolicyTypes, []networkingv1.PolicyType{networkingv1.PolicyTypeIngress, networkingv1.PolicyTypeEgress}) {
						t.Errorf("%s/%s selects every pod and allows something", np.Namespace, np.Name)
					}
					denied[np.Namespace] = true
				}
				n := 0
				for _, p := range pods {
					if p.ns == np.Namespace && selects(&s.PodSelector, labels.Set(p.labels)) {
						n++
					}
				}
				if n == 0 {
					t.Errorf("NetworkPolicy %s/%s selects no pod", np.Namespace, np.Name)
				}
				var peers []networkingv1.NetworkPolicyPeer
				for _, r := range s.Ingress {
					peers = append(peers, r.From...)
					if len(r.From) == 0 || len(r.Ports) == 0 {
						t.Errorf("%s/%s: an ingress rule from anywhere or on every port", np.Namespace, np.Name)
					}
				}
				for _, r := range s.Egress {
					peers = append(peers, r.To...)
					if len(r.To) == 0 || len(r.Ports) == 0 {
						t.Errorf("%s/%s: an egress rule to anywhere or on every port", np.Namespace, np.Name)
					}
				}
				for _, peer := range peers {
					if peer.IPBlock != nil {
						if pfx, err := netip.ParsePrefix(peer.IPBlock.CIDR); err != nil || (pfx.Addr().Is4() && pfx.Bits() < 16) {
							t.Errorf("%s/%s: ipBlock %s is not a narrow CIDR", np.Namespace, np.Name, peer.IPBlock.CIDR)
						}
						continue
					}
					ns := peer.NamespaceSelector
					if ns != nil && ns.MatchLabels["kubernetes.io/metadata.name"] != "" && externalNamespaces[ns.MatchLabels["kubernetes.io/metadata.name"]] {
						continue
					}
					if ns != nil && ns.MatchLabels["relay.tunnel.dev/producers"] == "true" {
						continue // producers: the user's namespaces
					}
					hit := false
					for _, p := range pods {
						hit = hit || peerSelects(b, np.Namespace, peer, p)
					}
					if !hit {
						t.Errorf("%s/%s: peer %v selects no pod of the overlay", np.Namespace, np.Name, peer)
					}
				}
			}
			for ns := range nss {
				if !denied[ns] {
					t.Errorf("namespace %s has no default-deny NetworkPolicy", ns)
				}
			}
			for _, p := range pods {
				got := flows{}
				for _, np := range b.policies() {
					if np.Namespace != p.ns || !selects(&np.Spec.PodSelector, labels.Set(p.labels)) {
						continue
					}
					for _, r := range np.Spec.Ingress {
						for _, port := range r.Ports {
							got.add("in", *port.Protocol, portNum(port))
						}
					}
					for _, r := range np.Spec.Egress {
						for _, port := range r.Ports {
							got.add("out", *port.Protocol, portNum(port))
						}
					}
				}
				if want := needs(t, b, p); got.String() != want.String() {
					t.Errorf("%s/%s may: %v\n\tits configs need exactly: %v", p.ns, p.name, got, want)
				}
			}
			// Both ends: an egress rule to a pod of the overlay must be met
			// by that pod's ingress from the sender, on the same port.
			for _, src := range pods {
				for _, np := range b.policies() {
					if np.Namespace != src.ns || !selects(&np.Spec.PodSelector, labels.Set(src.labels)) {
						continue
					}
					for _, r := range np.Spec.Egress {
						for _, peer := range r.To {
							for _, dst := range pods {
								if !peerSelects(b, np.Namespace, peer, dst) {
									continue
								}
								for _, port := range r.Ports {
									if !admits(b, dst, src, *port.Protocol, portNum(port)) {
										t.Errorf("%s may send %s/%d to %s, which does not admit it", src.name, *port.Protocol, portNum(port), dst.name)
									}
								}
							}
						}
					}
				}
			}
		})
	}
}

func portNum(p networkingv1.NetworkPolicyPort) int {
	if p.Port == nil {
		return 0
	}
	return p.Port.IntValue()
}

// admits says whether dst's ingress policies let src in on proto/port.
func admits(b *bundle, dst, src pod, proto corev1.Protocol, port int) bool {
	for _, np := range b.policies() {
		if np.Namespace != dst.ns || !selects(&np.Spec.PodSelector, labels.Set(dst.labels)) {
			continue
		}
		for _, r := range np.Spec.Ingress {
			from := false
			for _, peer := range r.From {
				from = from || peerSelects(b, np.Namespace, peer, src)
			}
			for _, p := range r.Ports {
				if from && *p.Protocol == proto && portNum(p) == port {
					return true
				}
			}
		}
	}
	return false
}
