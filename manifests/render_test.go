package manifests

import (
	"encoding/json"
	"fmt"
	"net"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
)

// overlay is one directory a user applies to one cluster.
type overlay struct {
	dir  string // under manifests/
	side string // "eks" (relay, exposes) or "aks" (bunny, forwards)
	pair string // the overlay the other cluster applies with it
}

var overlays = []overlay{
	{dir: "eks", side: "eks", pair: "aks"},
	{dir: "aks", side: "aks", pair: "eks"},
	{dir: "alt/eks-listens", side: "eks", pair: "alt/aks-dials"},
	{dir: "alt/aks-dials", side: "aks", pair: "alt/eks-listens"},
	{dir: "alt/eks-postgres", side: "eks", pair: "aks"},
	{dir: "alt/eks-ha", side: "eks", pair: "alt/aks-ha"},
	{dir: "alt/aks-ha", side: "aks", pair: "alt/eks-ha"},
}

// Namespaces a policy may name that no overlay creates: the cluster's DNS
// and the Prometheus that scrapes the admin ports.
var externalNamespaces = map[string]bool{"kube-system": true, "monitoring": true}

// bundle is one overlay, built and decoded.
type bundle struct {
	dir  string
	objs []runtime.Object
	json [][]byte // each object as kustomize rendered it
}

// strictDecoder refuses unknown and duplicate fields.
var strictDecoder = serializer.NewCodecFactory(scheme.Scheme, serializer.EnableStrict).UniversalDeserializer()

// decodeStrict decodes one object into its k8s.io/api type.
func decodeStrict(b []byte) (runtime.Object, error) {
	obj, _, err := strictDecoder.Decode(b, nil, nil)
	if err != nil {
		return nil, err
	}
	return obj, nil
}

var (
	builtMu sync.Mutex
	built   = map[string]*bundle{}
)

// build runs kustomize on an overlay directory, as `kubectl apply -k`
// would, and decodes every object strictly; it fails t on any error.
func build(t testing.TB, dir string) *bundle {
	t.Helper()
	builtMu.Lock()
	defer builtMu.Unlock()
	if b, ok := built[dir]; ok {
		return b
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		t.Fatal(err)
	}
	k := krusty.MakeKustomizer(krusty.MakeDefaultOptions())
	rm, err := k.Run(filesys.MakeFsOnDisk(), abs)
	if err != nil {
		t.Fatalf("kustomize build %s: %v", dir, err)
	}
	b := &bundle{dir: dir}
	for _, r := range rm.Resources() {
		j, err := r.MarshalJSON()
		if err != nil {
			t.Fatalf("%s: %s: %v", dir, r.CurId(), err)
		}
		obj, err := decodeStrict(j)
		if err != nil {
			t.Fatalf("%s: %s does not decode strictly into its k8s.io/api type: %v", dir, r.CurId(), err)
		}
		b.objs = append(b.objs, obj)
		b.json = append(b.json, j)
	}
	built[dir] = b
	return b
}

func (b *bundle) deployments() []*appsv1.Deployment {
	var out []*appsv1.Deployment
	for _, o := range b.objs {
		if d, ok := o.(*appsv1.Deployment); ok {
			out = append(out, d)
		}
	}
	return out
}

func (b *bundle) deployment(t testing.TB, ns, name string) *appsv1.Deployment {
	t.Helper()
	for _, d := range b.deployments() {
		if d.Namespace == ns && d.Name == name {
			return d
		}
	}
	t.Fatalf("%s: no Deployment %s/%s", b.dir, ns, name)
	return nil
}

func (b *bundle) services() []*corev1.Service {
	var out []*corev1.Service
	for _, o := range b.objs {
		if s, ok := o.(*corev1.Service); ok {
			out = append(out, s)
		}
	}
	return out
}

func (b *bundle) policies() []*networkingv1.NetworkPolicy {
	var out []*networkingv1.NetworkPolicy
	for _, o := range b.objs {
		if p, ok := o.(*networkingv1.NetworkPolicy); ok {
			out = append(out, p)
		}
	}
	return out
}

func (b *bundle) namespaces() map[string]*corev1.Namespace {
	out := map[string]*corev1.Namespace{}
	for _, o := range b.objs {
		if n, ok := o.(*corev1.Namespace); ok {
			out[n.Name] = n
		}
	}
	return out
}

func (b *bundle) configMap(ns, name string) *corev1.ConfigMap {
	for _, o := range b.objs {
		if c, ok := o.(*corev1.ConfigMap); ok && c.Namespace == ns && c.Name == name {
			return c
		}
	}
	return nil
}

func (b *bundle) has(kind, ns, name string) bool {
	for _, o := range b.objs {
		m := objMeta(o)
		if o.GetObjectKind().GroupVersionKind().Kind == kind && m.ns == ns && m.name == name {
			return true
		}
	}
	return false
}

type objectName struct{ ns, name string }

func objMeta(o runtime.Object) objectName {
	var m struct {
		Metadata struct {
			Name      string `json:"name"`
			Namespace string `json:"namespace"`
		} `json:"metadata"`
	}
	j, _ := json.Marshal(o)
	_ = json.Unmarshal(j, &m)
	return objectName{m.Metadata.Namespace, m.Metadata.Name}
}

// file is where a path inside a container comes from: an item of a
// ConfigMap or Secret volume, or a directory on another volume.
type file struct {
	volume corev1.Volume
	mount  corev1.VolumeMount
	key    string // the item within the ConfigMap or Secret ("" for a directory)
}

// resolve finds the volume a container path lives on.
func resolve(spec *corev1.PodSpec, c *corev1.Container, path string) (file, error) {
	for _, m := range c.VolumeMounts {
		rel, ok := strings.CutPrefix(path, strings.TrimSuffix(m.MountPath, "/")+"/")
		if path == m.MountPath {
			rel, ok = "", true
		}
		if !ok {
			continue
		}
		for _, v := range spec.Volumes {
			if v.Name == m.Name {
				return file{volume: v, mount: m, key: rel}, nil
			}
		}
		return file{}, fmt.Errorf("volume mount %q names no volume", m.Name)
	}
	return file{}, fmt.Errorf("%s is on no volume of container %s (the root filesystem is read-only and holds nothing of ours)", path, c.Name)
}

// data returns a ConfigMap item that a container path names.
func (b *bundle) data(t testing.TB, ns string, spec *corev1.PodSpec, c *corev1.Container, path string) string {
	t.Helper()
	f, err := resolve(spec, c, path)
	if err != nil {
		t.Fatalf("%s: %v", b.dir, err)
	}
	if f.volume.ConfigMap == nil {
		t.Fatalf("%s: %s is not on a ConfigMap volume", b.dir, path)
	}
	cm := b.configMap(ns, f.volume.ConfigMap.Name)
	if cm == nil {
		t.Fatalf("%s: %s: ConfigMap %s/%s is not in the overlay", b.dir, path, ns, f.volume.ConfigMap.Name)
	}
	d, ok := cm.Data[f.key]
	if !ok {
		t.Fatalf("%s: %s: ConfigMap %s has no item %q", b.dir, path, cm.Name, f.key)
	}
	return d
}

// container returns the named container of a pod spec.
func container(t testing.TB, spec *corev1.PodSpec, name string) *corev1.Container {
	t.Helper()
	return named(t, "container", spec.Containers, func(c *corev1.Container) string { return c.Name }, name)
}

// named returns the element of items whose name is name, or fails t
// naming what (a container, a peer) was missing.
func named[T any](t testing.TB, what string, items []T, nameOf func(*T) string, name string) *T {
	t.Helper()
	for i := range items {
		if nameOf(&items[i]) == name {
			return &items[i]
		}
	}
	t.Fatalf("no %s %q", what, name)
	return nil
}

// flag returns the value of --name in args ("--name=v" or "--name v").
func flag(args []string, name string) (string, bool) {
	for i, a := range args {
		if v, ok := strings.CutPrefix(a, "--"+name+"="); ok {
			return v, true
		}
		if a == "--"+name && i+1 < len(args) {
			return args[i+1], true
		}
	}
	return "", false
}

// portOf returns the port of a host:port or :port.
func portOf(t testing.TB, hostport string) int {
	t.Helper()
	_, p, err := net.SplitHostPort(hostport)
	if err != nil {
		t.Fatalf("%q: %v", hostport, err)
	}
	n, err := strconv.Atoi(p)
	if err != nil {
		t.Fatalf("%q: port: %v", hostport, err)
	}
	return n
}

// serviceFor resolves a Kubernetes Service DNS name and port
// (name.ns.svc.cluster.local:port) to the Service and the pods' port.
func (b *bundle) serviceFor(hostport string) (*corev1.Service, *corev1.ServicePort, error) {
	host, p, err := net.SplitHostPort(hostport)
	if err != nil {
		return nil, nil, err
	}
	parts := strings.Split(host, ".")
	if len(parts) < 3 || parts[2] != "svc" {
		return nil, nil, fmt.Errorf("%s is not a Service name (name.namespace.svc.cluster.local)", host)
	}
	for _, s := range b.services() {
		if s.Name != parts[0] || s.Namespace != parts[1] {
			continue
		}
		for i := range s.Spec.Ports {
			if strconv.Itoa(int(s.Spec.Ports[i].Port)) == p {
				return s, &s.Spec.Ports[i], nil
			}
		}
		return nil, nil, fmt.Errorf("Service %s/%s has no port %s", s.Namespace, s.Name, p)
	}
	return nil, nil, fmt.Errorf("no Service %s/%s in the overlay", parts[1], parts[0])
}
