package tunneltest

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/tunnel-dev/tunnel/internal/testutil"
	"github.com/tunnel-dev/tunnel/keys"
	"github.com/tunnel-dev/tunnel/keys/kube"
	"github.com/tunnel-dev/tunnel/keys/store"
	"github.com/tunnel-dev/tunnel/manifests/kubetest"
)

// One kube-apiserver + etcd for the package's tests.
var apiserver kubetest.Shared

func TestMain(m *testing.M) {
	code := m.Run()
	if err := apiserver.Stop(); err != nil {
		fmt.Fprintln(os.Stderr, err)
	}
	os.Exit(code)
}

// rbacManifest is the Role the manifests ship.
func rbacManifest(t *testing.T) string {
	t.Helper()
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..", "manifests", "base", "rbac-rotate.yaml")
}

func clientFor(t *testing.T, env *kubetest.Env, user string, groups ...string) kubernetes.Interface {
	t.Helper()
	cfg, err := env.UserConfig(user, groups...)
	if err != nil {
		t.Fatal(err)
	}
	return kubernetes.NewForConfigOrDie(cfg)
}

func privateKey(t *testing.T) []byte {
	t.Helper()
	return []byte(testutil.PrivateKey(t).Base64() + "\n")
}

// The Secret store against a real API server: created, read, patched
// (set and delete in one conditional patch), a stale write refused with
// 409, and a writer that races Update retried.
func TestSecretStore(t *testing.T) {
	env := apiserver.Env(t)
	ctx := context.Background()
	ns := env.Namespace(t, nil)
	admin := kubernetes.NewForConfigOrDie(env.AdminConfig())
	s := kube.NewSecret(admin.CoreV1().RESTClient(), ns, "tunnel-keys", "")
	if s.String() != "secret:"+ns+"/tunnel-keys" {
		t.Fatalf("String %q", s)
	}
	if _, err := s.Load(ctx); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("absent secret: %v", err)
	}
	priv, next := privateKey(t), privateKey(t)
	created, err := s.Write(ctx, "", store.Change{Set: map[string][]byte{keys.PrivateKeyFile: priv, "peer.eks.pub": []byte("A\n")}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Write(ctx, "", store.Change{Set: map[string][]byte{"x.pub": nil}}); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("creating twice: %v", err)
	}
	snap, err := s.Load(ctx)
	if err != nil || snap.Version != created.Version || string(snap.Items[keys.PrivateKeyFile]) != string(priv) {
		t.Fatalf("load after create: %v %v", snap.Names(), err)
	}
	patched, err := s.Write(ctx, snap.Version, store.Change{
		Set:    map[string][]byte{keys.NextKeyFile: next, "empty.pub": nil},
		Delete: []string{"peer.eks.pub"},
	})
	if err != nil {
		t.Fatal(err)
	}
	sec, err := admin.CoreV1().Secrets(ns).Get(ctx, "tunnel-keys", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if string(sec.Data[keys.NextKeyFile]) != string(next) || string(sec.Data[keys.PrivateKeyFile]) != string(priv) ||
		sec.Data["empty.pub"] == nil || len(sec.Data["empty.pub"]) != 0 || len(sec.Data) != 3 {
		t.Fatalf("after the patch the Secret holds %v", Keys(sec.Data))
	}
	if store.Version(sec.ResourceVersion) != patched.Version {
		t.Fatalf("patch returned version %s, the Secret is at %s", patched.Version, sec.ResourceVersion)
	}

	// A write based on an old resourceVersion: 409, nothing changed.
	_, err = s.Write(ctx, snap.Version, store.Change{Set: map[string][]byte{keys.PrivateKeyFile: next}})
	if !errors.Is(err, store.ErrConflict) || !apierrors.IsConflict(err) {
		t.Fatalf("stale patch: %v", err)
	}
	if strings.Contains(err.Error(), strings.TrimSpace(string(next))) {
		t.Fatalf("the error shows the key: %v", err)
	}
	if cur, _ := s.Load(ctx); cur.Version != patched.Version {
		t.Fatal("a stale patch changed the Secret")
	}

	// Another writer gets in between Update's read and its patch: the
	// patch gets 409, and RetryOnConflict reads again and calls change
	// again; both writes are kept.
	calls := 0
	out, err := store.Update(ctx, s, func(cur store.Snapshot) (store.Change, error) {
		calls++
		if calls == 1 {
			sec, err := admin.CoreV1().Secrets(ns).Get(ctx, "tunnel-keys", metav1.GetOptions{})
			if err != nil {
				return store.Change{}, err
			}
			sec.Data["other.pub"] = []byte("someone else\n")
			if _, err := admin.CoreV1().Secrets(ns).Update(ctx, sec, metav1.UpdateOptions{}); err != nil {
				return store.Change{}, err
			}
		}
		return store.Change{Set: map[string][]byte{"mine.pub": []byte("mine\n")}}, nil
	})
	if err != nil || calls != 2 || !out.Has("other.pub") || !out.Has("mine.pub") {
		t.Fatalf("update racing another writer: %d calls, items %v, %v", calls, out.Names(), err)
	}
}

// The Role that manifests/base/rbac-rotate.yaml ships lets a member of
// tunnel-key-rotators do what rotate does (read and patch the gateway's
// Secret, list the gateway's pods, read a real gateway's /status through
// the pod proxy) and nothing more; a user without it gets 403, with an
// error that names the Role.
func TestRotateRole(t *testing.T) {
	env := apiserver.Env(t)
	ctx := context.Background()
	ns := env.Namespace(t, nil)
	admin := kubernetes.NewForConfigOrDie(env.AdminConfig())
	CreateSecret(t, admin, ns, "tunnel-keys", map[string][]byte{keys.PrivateKeyFile: privateKey(t)})
	CreateSecret(t, admin, ns, "other", map[string][]byte{"x": []byte("y")})
	role := ApplyRBAC(t, admin, ns, rbacManifest(t))
	if role.Name != "tunnel-key-rotator" {
		t.Fatalf("role %q", role.Name)
	}

	alice := clientFor(t, env, "alice", "tunnel-key-rotators")
	mine := kube.NewSecret(alice.CoreV1().RESTClient(), ns, "tunnel-keys", "")
	WaitForAccess(t, "alice reading the Secret", func() error { _, err := mine.Load(ctx); return err })
	if _, err := store.Update(ctx, mine, func(store.Snapshot) (store.Change, error) {
		return store.Change{Set: map[string][]byte{keys.NextKeyFile: privateKey(t)}}, nil
	}); err != nil {
		t.Fatalf("alice patching the Secret: %v", err)
	}
	if _, err := kube.NewSecret(alice.CoreV1().RESTClient(), ns, "other", "").Load(ctx); !apierrors.IsForbidden(err) || !strings.Contains(err.Error(), kube.RoleHint) {
		t.Fatalf("alice reading another Secret: %v", err)
	}
	if err := alice.CoreV1().Secrets(ns).Delete(ctx, "tunnel-keys", metav1.DeleteOptions{}); !apierrors.IsForbidden(err) {
		t.Fatalf("alice deleting the Secret: %v", err)
	}

	ip, ok := ProxyableIP()
	if ok {
		p := StartPair(t, Options{AdminHost: ip})
		port := strings.TrimPrefix(p.AKS.AdminURL(), "http://"+ip+":")
		GatewayPod(t, admin, ns, "gateway-0", map[string]string{"app.kubernetes.io/name": "tunnel-gateway"}, ip)
		addr, err := kube.ParsePodAddress("pod:" + ns + "/app.kubernetes.io/name=tunnel-gateway:" + port)
		if err != nil {
			t.Fatal(err)
		}
		sts, err := kube.NewPodStatus(alice.CoreV1().RESTClient(), addr).Statuses(ctx)
		if err != nil || len(sts) != 1 || sts[0].PublicKey != p.AKS.PublicKey().String() {
			t.Fatalf("alice reading the gateway's status through the pod proxy: %+v %v", sts, err)
		}
		mallory := clientFor(t, env, "mallory", "developers")
		if _, err := kube.NewPodStatus(mallory.CoreV1().RESTClient(), addr).Statuses(ctx); !apierrors.IsForbidden(err) || !strings.Contains(err.Error(), kube.RoleHint) {
			t.Fatalf("mallory reading the gateway's status: %v", err)
		}
	} else {
		t.Log("this machine has no global unicast address for the pod proxy to dial; pods/proxy not exercised here")
	}

	mallory := kube.NewSecret(clientFor(t, env, "mallory", "developers").CoreV1().RESTClient(), ns, "tunnel-keys", "")
	_, err := mallory.Load(ctx)
	if !apierrors.IsForbidden(err) || !strings.Contains(err.Error(), kube.RoleHint) || !strings.Contains(err.Error(), `"mallory"`) {
		t.Fatalf("mallory reading the Secret: %v", err)
	}
	if _, err := mallory.Write(ctx, "1", store.Change{Set: map[string][]byte{"x.pub": []byte("x")}}); !apierrors.IsForbidden(err) {
		t.Fatalf("mallory patching the Secret: %v", err)
	}
}
