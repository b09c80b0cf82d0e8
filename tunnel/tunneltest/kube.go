package tunneltest

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"

	"github.com/tunnel-dev/tunnel/internal/kubelet"
)

// ProxyableIP returns an address of this machine that the API server's pod
// proxy will dial: it refuses loopback and link-local pod IPs ("address not
// allowed"), so a test pod's IP must be one of the machine's global unicast
// addresses. ok is false when the machine has none.
func ProxyableIP() (ip string, ok bool) {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return "", false
	}
	for _, a := range addrs {
		n, isNet := a.(*net.IPNet)
		if !isNet || n.IP.To4() == nil || !n.IP.IsGlobalUnicast() {
			continue
		}
		// It must answer locally, too.
		l, err := net.Listen("tcp", net.JoinHostPort(n.IP.String(), "0"))
		if err != nil {
			continue
		}
		l.Close()
		return n.IP.String(), true
	}
	return "", false
}

// GatewayPod creates a Pod object standing for a gateway whose admin
// server runs in this test process at ip, and sets its status (as the
// kubelet would) to Running with that pod IP, so that the API server's pod
// proxy reaches the real admin server. No kubelet runs: the pod is an
// object only.
func GatewayPod(t testing.TB, admin kubernetes.Interface, ns, name string, labels map[string]string, ip string) {
	t.Helper()
	ctx := context.Background()
	pods := admin.CoreV1().Pods(ns)
	pod, err := pods.Create(ctx, &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{
			Name:  "gateway",
			Image: "tunnel:test",
			Ports: []corev1.ContainerPort{{Name: "admin", ContainerPort: 9090}},
		}}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("creating pod %s/%s: %v", ns, name, err)
	}
	pod.Status = corev1.PodStatus{
		Phase:  corev1.PodRunning,
		PodIP:  ip,
		PodIPs: []corev1.PodIP{{IP: ip}},
	}
	if _, err := pods.UpdateStatus(ctx, pod, metav1.UpdateOptions{}); err != nil {
		t.Fatalf("setting pod %s/%s running at %s: %v", ns, name, ip, err)
	}
}

// SyncSecret does a kubelet's job for one Secret volume: it publishes the
// Secret's data into k's directory whenever the Secret changes, polling
// every 50ms until the test ends. It publishes once before returning.
func SyncSecret(t testing.TB, admin kubernetes.Interface, ns, name string, k *kubelet.Volume) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	seen := ""
	syncOnce := func() error {
		sec, err := admin.CoreV1().Secrets(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		if sec.ResourceVersion == seen {
			return nil
		}
		if err := k.Write(sec.Data); err != nil {
			return err
		}
		seen = sec.ResourceVersion
		return nil
	}
	if err := syncOnce(); err != nil {
		cancel()
		t.Fatalf("publishing secret %s/%s: %v", ns, name, err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
				if err := syncOnce(); err != nil && ctx.Err() == nil {
					fmt.Fprintf(os.Stderr, "kubelet sync of %s/%s: %v\n", ns, name, err)
				}
			}
		}
	}()
	t.Cleanup(func() { cancel(); <-done })
}

// CreateSecret creates Secret ns/name holding items.
func CreateSecret(t testing.TB, admin kubernetes.Interface, ns, name string, items map[string][]byte) {
	t.Helper()
	_, err := admin.CoreV1().Secrets(ns).Create(context.Background(), &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Type:       corev1.SecretTypeOpaque,
		Data:       items,
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("creating secret %s/%s: %v", ns, name, err)
	}
}

// SecretItems reads a side's key store directory into Secret data.
func (s *Side) SecretItems(t testing.TB) map[string][]byte {
	t.Helper()
	snap, err := s.Store().Load(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return snap.Items
}

// ApplyRBAC creates the Role and RoleBinding of a manifest file (such as
// manifests/base/rbac-rotate.yaml) in ns, and returns the Role.
func ApplyRBAC(t testing.TB, admin kubernetes.Interface, ns, path string) *rbacv1.Role {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	var role *rbacv1.Role
	for doc := range strings.SplitSeq(string(b), "\n---\n") {
		if strings.TrimSpace(doc) == "" {
			continue
		}
		obj, _, err := scheme.Codecs.UniversalDeserializer().Decode([]byte(doc), nil, nil)
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		switch o := obj.(type) {
		case *rbacv1.Role:
			o.Namespace = ns
			if role, err = admin.RbacV1().Roles(ns).Create(ctx, o, metav1.CreateOptions{}); err != nil {
				t.Fatalf("creating the Role of %s: %v", path, err)
			}
		case *rbacv1.RoleBinding:
			o.Namespace = ns
			if _, err := admin.RbacV1().RoleBindings(ns).Create(ctx, o, metav1.CreateOptions{}); err != nil {
				t.Fatalf("creating the RoleBinding of %s: %v", path, err)
			}
		default:
			t.Fatalf("%s: unexpected %T", path, obj)
		}
	}
	if role == nil {
		t.Fatalf("%s has no Role", path)
	}
	return role
}

// WaitForAccess polls (bounded) until get succeeds, as RBAC bindings take
// effect through an informer a moment after they are created.
func WaitForAccess(t testing.TB, what string, get func() error) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		err := get()
		if err == nil {
			return
		}
		if !apierrors.IsForbidden(err) && !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("%s: %v", what, err)
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: still %v after 10s", what, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Keys lists the names of items, sorted, for messages.
func Keys(items map[string][]byte) []string { return slices.Sorted(maps.Keys(items)) }
