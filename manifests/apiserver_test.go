package manifests

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/restmapper"
	"k8s.io/utils/ptr"

	"github.com/tunnel-dev/tunnel/keys"
	"github.com/tunnel-dev/tunnel/manifests/kubetest"
)

// kube is the API server the tests of this package share.
var kube kubetest.Shared

func TestMain(m *testing.M) {
	code := m.Run()
	if err := kube.Stop(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		if code == 0 {
			code = 1
		}
	}
	os.Exit(code)
}

// warnings collects the API server's warnings (Pod Security's "would
// violate" among them).
type warnings struct {
	mu   sync.Mutex
	msgs []string
}

func (w *warnings) HandleWarningHeader(_ int, _ string, msg string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.msgs = append(w.msgs, msg)
}

func (w *warnings) take() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	m := w.msgs
	w.msgs = nil
	return m
}

type clients struct {
	cs     *kubernetes.Clientset
	dyn    *dynamic.DynamicClient
	mapper meta.RESTMapper
	warn   *warnings
}

func newClients(t *testing.T, env *kubetest.Env) clients {
	t.Helper()
	cfg := rest.CopyConfig(env.AdminConfig())
	w := &warnings{}
	cfg.WarningHandler = w
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	dc, err := discovery.NewDiscoveryClientForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return clients{cs: cs, dyn: dyn, mapper: restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(dc)), warn: w}
}

// Every overlay, server-side applied to a real kube-apiserver: its
// namespaces enforce Pod Security "restricted" there, every object is
// accepted by the server's validation with no warning, each pod template
// submitted as a Pod (dry run) is admitted by Pod Security, and the key
// Secrets the docs tell users to create are accepted with the items the
// pods mount. Namespaces get a suffix per overlay, so that overlays that
// share names (tunnel, relay, bunny) do not meet on the one server.
func TestServerSideApply(t *testing.T) {
	env := kube.Env(t)
	c := newClients(t, env)
	for _, o := range overlays {
		t.Run(o.dir, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
			defer cancel()
			b := build(t, o.dir)
			suffix := "-" + strings.ReplaceAll(o.dir, "/", "-")
			var objs []*unstructured.Unstructured
			for _, j := range b.json {
				u := &unstructured.Unstructured{}
				if err := json.Unmarshal(j, &u.Object); err != nil {
					t.Fatal(err)
				}
				if u.GetKind() == "Namespace" {
					u.SetName(u.GetName() + suffix)
				} else if u.GetNamespace() != "" {
					u.SetNamespace(u.GetNamespace() + suffix)
				}
				objs = append(objs, u)
			}
			// Namespaces first: a namespaced object cannot be applied into
			// a namespace that does not exist yet.
			began := time.Now()
			for _, pass := range []bool{true, false} {
				for _, u := range objs {
					if (u.GetKind() == "Namespace") != pass {
						continue
					}
					apply(ctx, t, c, u)
				}
			}
			applied := time.Since(began)
			if w := c.warn.take(); len(w) > 0 {
				t.Errorf("the API server warned:\n\t%s", strings.Join(w, "\n\t"))
			}
			for _, u := range objs {
				if u.GetKind() != "Namespace" {
					continue
				}
				ns, err := c.cs.CoreV1().Namespaces().Get(ctx, u.GetName(), metav1.GetOptions{})
				if err != nil {
					t.Fatal(err)
				}
				if ns.Labels["pod-security.kubernetes.io/enforce"] != "restricted" {
					t.Errorf("namespace %s does not enforce Pod Security restricted: %v", ns.Name, ns.Labels)
				}
			}

			// The Secrets, as docs/deploy.md creates them from `tunnel keys`
			// output, with the items the pods mount.
			secrets := secretsFor(t, b)
			for ns, list := range secrets {
				for _, s := range list {
					if _, err := c.cs.CoreV1().Secrets(ns+suffix).Create(ctx, s, metav1.CreateOptions{}); err != nil {
						t.Errorf("creating Secret %s/%s: %v", ns, s.Name, err)
					}
				}
			}

			// Each pod template as a Pod, for Pod Security admission.
			dryRun := time.Now()
			for _, p := range b.pods() {
				pod := &corev1.Pod{
					ObjectMeta: metav1.ObjectMeta{Name: p.name + "-dry-run", Labels: p.labels, Annotations: p.d.Spec.Template.Annotations},
					Spec:       *p.spec.DeepCopy(),
				}
				if _, err := c.cs.CoreV1().Pods(p.ns+suffix).Create(ctx, pod, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}}); err != nil {
					t.Errorf("pod %s refused: %v", p.name, err)
				}
				if w := c.warn.take(); len(w) > 0 {
					t.Errorf("pod %s: the API server warned:\n\t%s", p.name, strings.Join(w, "\n\t"))
				}
			}
			t.Logf("%d objects applied in %v; %d pods admitted (dry run) in %v", len(objs), applied.Round(time.Millisecond), len(b.pods()), time.Since(dryRun).Round(time.Millisecond))
		})
	}
}

func apply(ctx context.Context, t *testing.T, c clients, u *unstructured.Unstructured) {
	t.Helper()
	gvk := u.GroupVersionKind()
	m, err := c.mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
	if err != nil {
		t.Fatalf("%s: %v", gvk, err)
	}
	var r dynamic.ResourceInterface = c.dyn.Resource(m.Resource)
	if m.Scope.Name() == meta.RESTScopeNameNamespace {
		r = c.dyn.Resource(m.Resource).Namespace(u.GetNamespace())
	}
	if _, err := r.Apply(ctx, u.GetName(), u, metav1.ApplyOptions{FieldManager: "manifests-test", Force: true}); err != nil {
		t.Errorf("server-side apply of %s %s/%s: %v", u.GetKind(), u.GetNamespace(), u.GetName(), err)
	}
}

// secretsFor makes, per namespace, the Secrets the pods of an overlay
// mount, from keys made as `tunnel keys generate` and `tunnel keys
// identity` make them.
func secretsFor(t *testing.T, b *bundle) map[string][]*corev1.Secret {
	t.Helper()
	out := map[string][]*corev1.Secret{}
	for _, p := range b.pods() {
		for _, v := range p.spec.Volumes {
			if v.Secret == nil {
				continue
			}
			dir := t.TempDir()
			data := map[string][]byte{}
			read := func(names ...string) {
				for _, n := range names {
					d, err := os.ReadFile(dir + "/" + n)
					if err != nil {
						t.Fatal(err)
					}
					data[n] = d
				}
			}
			switch name := v.Secret.SecretName; {
			case isGateway(p.labels) && name == gatewayOf(t, b, p).secret:
				if _, err := keys.WriteKeyPair(dir, false); err != nil {
					t.Fatal(err)
				}
				read(keys.PrivateKeyFile)
				for _, pc := range gatewayOf(t, b, p).cfg.Peers {
					peer, err := keys.GeneratePrivateKey()
					if err != nil {
						t.Fatal(err)
					}
					data[keys.PeerKeyFile(pc.Name)] = keys.FormatPeerKeys(peer.Public())
				}
			case name == "relay-identity" || name == "bunny-identity":
				if _, err := keys.WriteIdentity(dir, strings.TrimSuffix(v.Secret.SecretName, "-identity"), false); err != nil {
					t.Fatal(err)
				}
				read(keys.IdentityCertFile, keys.IdentityKeyFile)
			case name == "relay-store":
				data["dsn"] = []byte("postgres://relay:not-a-real-password@relay-db.example.internal:5432/relay?sslmode=verify-full\n")
			default:
				t.Fatalf("pod %s mounts Secret %s, which docs/deploy.md does not tell anyone to create", p.name, v.Secret.SecretName)
			}
			out[p.ns] = append(out[p.ns], &corev1.Secret{
				ObjectMeta: metav1.ObjectMeta{Name: v.Secret.SecretName},
				Type:       corev1.SecretTypeOpaque,
				Data:       data,
			})
		}
	}
	return out
}

// The control: Pod Security admission really judges these pods. The
// gateway's pod with any one of these changes is refused in the
// namespace the overlay made, naming what it violates.
func TestPodSecurityRefuses(t *testing.T) {
	env := kube.Env(t)
	c := newClients(t, env)
	b := build(t, "eks")
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	ns := env.Namespace(t, b.namespaces()["tunnel"].Labels)
	gw := b.deployment(t, "tunnel", "tunnel-gateway")
	tests := []struct {
		name   string
		change func(*corev1.PodSpec)
		want   string
	}{
		{"NET_ADMIN", func(s *corev1.PodSpec) {
			s.Containers[0].SecurityContext.Capabilities.Add = []corev1.Capability{"NET_ADMIN"}
		}, `"NET_ADMIN"`},
		{"host network", func(s *corev1.PodSpec) { s.HostNetwork = true }, "hostNetwork=true"},
		{"privilege escalation", func(s *corev1.PodSpec) {
			s.Containers[0].SecurityContext.AllowPrivilegeEscalation = ptr.To(true)
		}, "allowPrivilegeEscalation != false"},
		{"root", func(s *corev1.PodSpec) {
			s.SecurityContext.RunAsNonRoot = nil
			s.Containers[0].SecurityContext.RunAsNonRoot = nil
			s.SecurityContext.RunAsUser = ptr.To[int64](0)
			s.Containers[0].SecurityContext.RunAsUser = ptr.To[int64](0)
		}, "runAsUser=0"},
		{"no seccomp", func(s *corev1.PodSpec) {
			s.SecurityContext.SeccompProfile = nil
			s.Containers[0].SecurityContext.SeccompProfile = nil
		}, "seccompProfile"},
		{"capabilities kept", func(s *corev1.PodSpec) {
			s.Containers[0].SecurityContext.Capabilities.Drop = nil
		}, `drop=["ALL"]`},
	}
	// The unchanged pod is admitted here, so each refusal is the change's.
	ok := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "gateway"}, Spec: *gw.Spec.Template.Spec.DeepCopy()}
	if _, err := c.cs.CoreV1().Pods(ns).Create(ctx, ok, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}}); err != nil {
		t.Fatalf("the unchanged gateway pod: %v", err)
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := ok.DeepCopy()
			tt.change(&p.Spec)
			_, err := c.cs.CoreV1().Pods(ns).Create(ctx, p, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
			if !apierrors.IsForbidden(err) || !strings.Contains(err.Error(), `violates PodSecurity "restricted:latest"`) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("got %v, want Forbidden by PodSecurity restricted naming %s", err, tt.want)
			}
		})
	}
}
