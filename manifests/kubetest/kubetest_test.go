package kubetest_test

import (
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/util/retry"
	"k8s.io/utils/ptr"

	"github.com/tunnel-dev/tunnel/manifests/kubetest"
)

// kube is the server the tests of this package share; TestMain stops it.
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

func restricted() map[string]string {
	return map[string]string{"pod-security.kubernetes.io/enforce": "restricted"}
}

func clientset(t *testing.T, cfg *rest.Config) *kubernetes.Clientset {
	t.Helper()
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatalf("making a clientset: %v", err)
	}
	return cs
}

// A Secret is created and merge-patched, a writer holding a stale
// resourceVersion gets 409 Conflict and changes nothing, and retrying on
// conflict from a fresh read succeeds: what `tunnel keys rotate` relies on.
func TestSecretCreatePatchConflict(t *testing.T) {
	env := kube.Env(t)
	ns := env.Namespace(t, restricted())
	secrets := clientset(t, env.AdminConfig()).CoreV1().Secrets(ns)
	ctx := t.Context()

	created, err := secrets.Create(ctx, &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: "wireguard"},
		Type:       corev1.SecretTypeOpaque,
		Data:       map[string][]byte{"private.key": []byte("old-key")},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("creating the Secret: %v", err)
	}

	// JSON merge patch; Secret data values are base64 in JSON.
	patch := []byte(`{"data":{"private.key":"bmV3LWtleQ==","peers":"cGVlci1h"}}`) // new-key, peer-a
	patched, err := secrets.Patch(ctx, "wireguard", types.MergePatchType, patch, metav1.PatchOptions{})
	if err != nil {
		t.Fatalf("merge-patching the Secret: %v", err)
	}
	if got := string(patched.Data["private.key"]); got != "new-key" {
		t.Errorf("after the patch private.key = %q, want new-key", got)
	}
	if got := string(patched.Data["peers"]); got != "peer-a" {
		t.Errorf("after the patch peers = %q, want peer-a", got)
	}
	if patched.ResourceVersion == created.ResourceVersion {
		t.Errorf("resourceVersion unchanged by the patch: %s", patched.ResourceVersion)
	}

	// A concurrent writer that read before the patch.
	stale := created.DeepCopy()
	stale.Data["private.key"] = []byte("stale-key")
	_, err = secrets.Update(ctx, stale, metav1.UpdateOptions{})
	if !apierrors.IsConflict(err) {
		t.Fatalf("update with stale resourceVersion %s: got %v, want 409 Conflict", created.ResourceVersion, err)
	}
	got, err := secrets.Get(ctx, "wireguard", metav1.GetOptions{})
	if err != nil {
		t.Fatalf("reading the Secret back: %v", err)
	}
	if k := string(got.Data["private.key"]); k != "new-key" {
		t.Fatalf("the refused update changed private.key to %q", k)
	}

	// The usual answer to a conflict: read again, apply the change, retry.
	attempts := 0
	err = retry.RetryOnConflict(retry.DefaultRetry, func() error {
		attempts++
		cur, err := secrets.Get(ctx, "wireguard", metav1.GetOptions{})
		if err != nil {
			return err
		}
		if attempts == 1 {
			// Lose the race once more, to a writer between our read and write.
			if _, err := secrets.Patch(ctx, "wireguard", types.MergePatchType,
				[]byte(`{"data":{"peers":"cGVlci1iCg=="}}`), metav1.PatchOptions{}); err != nil {
				return fmt.Errorf("racing patch: %w", err)
			}
		}
		cur.Data["private.key"] = []byte("rotated-key")
		_, err = secrets.Update(ctx, cur, metav1.UpdateOptions{})
		return err
	})
	if err != nil {
		t.Fatalf("update retried on conflict: %v", err)
	}
	if attempts != 2 {
		t.Errorf("update took %d attempts, want 2 (one conflict, one success)", attempts)
	}
	got, err = secrets.Get(ctx, "wireguard", metav1.GetOptions{})
	if err != nil {
		t.Fatalf("reading the Secret back: %v", err)
	}
	if k, p := string(got.Data["private.key"]), string(got.Data["peers"]); k != "rotated-key" || p != "peer-b\n" {
		t.Errorf("after the retried update private.key=%q peers=%q, want rotated-key and the racing writer's peer-b", k, p)
	}
}

// A user with no bindings is refused Secrets (403); a Role and RoleBinding
// grant exactly what they list, in their namespace only.
func TestRBACForbiddenUntilBound(t *testing.T) {
	env := kube.Env(t)
	ns := env.Namespace(t, restricted())
	other := env.Namespace(t, restricted())
	admin := clientset(t, env.AdminConfig())
	ctx := t.Context()

	const user, group = "key-rotator", "tunnel:key-rotators"
	cfg, err := env.UserConfig(user, group)
	if err != nil {
		t.Fatal(err)
	}
	cs := clientset(t, cfg)

	// The apiserver sees the user and groups the certificate names.
	review, err := cs.AuthenticationV1().SelfSubjectReviews().Create(ctx, &authenticationv1.SelfSubjectReview{}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("self subject review: %v", err)
	}
	if ui := review.Status.UserInfo; ui.Username != user || !slices.Contains(ui.Groups, group) || !slices.Contains(ui.Groups, "system:authenticated") {
		t.Fatalf("apiserver sees user %q groups %v, want %q in %q and system:authenticated", ui.Username, ui.Groups, user, group)
	}

	secret := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: "wireguard"},
		Data:       map[string][]byte{"private.key": []byte("k")},
	}
	if _, err := cs.CoreV1().Secrets(ns).List(ctx, metav1.ListOptions{}); !apierrors.IsForbidden(err) {
		t.Fatalf("unbound user listing Secrets: got %v, want 403 Forbidden", err)
	}
	if _, err := cs.CoreV1().Secrets(ns).Create(ctx, secret, metav1.CreateOptions{}); !apierrors.IsForbidden(err) {
		t.Fatalf("unbound user creating a Secret: got %v, want 403 Forbidden", err)
	}

	if _, err := admin.RbacV1().Roles(ns).Create(ctx, &rbacv1.Role{
		ObjectMeta: metav1.ObjectMeta{Name: "key-rotator"},
		Rules: []rbacv1.PolicyRule{{
			APIGroups: []string{""},
			Resources: []string{"secrets"},
			Verbs:     []string{"get", "list", "create", "patch", "update"},
		}},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatalf("creating the Role: %v", err)
	}
	if _, err := admin.RbacV1().RoleBindings(ns).Create(ctx, &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "key-rotator"},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: "key-rotator"},
		Subjects:   []rbacv1.Subject{{Kind: rbacv1.GroupKind, APIGroup: rbacv1.GroupName, Name: group}},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatalf("creating the RoleBinding: %v", err)
	}

	// The RBAC authorizer reads bindings through an informer: allow it a moment.
	deadline := time.Now().Add(15 * time.Second)
	for {
		_, err = cs.CoreV1().Secrets(ns).Create(ctx, secret, metav1.CreateOptions{})
		if err == nil || !apierrors.IsForbidden(err) || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("bound user creating a Secret: %v", err)
	}
	if _, err := cs.CoreV1().Secrets(ns).Patch(ctx, "wireguard", types.MergePatchType,
		[]byte(`{"data":{"peers":"cA=="}}`), metav1.PatchOptions{}); err != nil {
		t.Errorf("bound user patching the Secret: %v", err)
	}
	if _, err := cs.CoreV1().Secrets(ns).List(ctx, metav1.ListOptions{}); err != nil {
		t.Errorf("bound user listing Secrets: %v", err)
	}
	// Nothing beyond the Role's verbs and namespace.
	if err := cs.CoreV1().Secrets(ns).Delete(ctx, "wireguard", metav1.DeleteOptions{}); !apierrors.IsForbidden(err) {
		t.Errorf("bound user deleting a Secret (verb not in the Role): got %v, want 403 Forbidden", err)
	}
	if _, err := cs.CoreV1().Secrets(other).List(ctx, metav1.ListOptions{}); !apierrors.IsForbidden(err) {
		t.Errorf("bound user listing Secrets in another namespace: got %v, want 403 Forbidden", err)
	}
	if _, err := cs.CoreV1().ConfigMaps(ns).List(ctx, metav1.ListOptions{}); !apierrors.IsForbidden(err) {
		t.Errorf("bound user listing ConfigMaps (not in the Role): got %v, want 403 Forbidden", err)
	}
}

func pod(name string, sc *corev1.SecurityContext) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: corev1.PodSpec{
			SecurityContext: &corev1.PodSecurityContext{
				RunAsNonRoot:   ptr.To(true),
				RunAsUser:      ptr.To[int64](65532),
				SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
			},
			Containers: []corev1.Container{{
				Name:            "gateway",
				Image:           "example.invalid/tunnel:dev",
				SecurityContext: sc,
			}},
		},
	}
}

// Pod Security admission judges pods submitted with dry-run: in a namespace
// enforcing "restricted", a pod adding NET_ADMIN is refused and a locked-down
// pod accepted; nothing is stored either way.
func TestPodSecurityAdmission(t *testing.T) {
	env := kube.Env(t)
	ns := env.Namespace(t, restricted())
	privileged := env.Namespace(t, map[string]string{"pod-security.kubernetes.io/enforce": "privileged"})
	cs := clientset(t, env.AdminConfig())
	ctx := t.Context()
	dryRun := metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}}

	lockedDown := &corev1.SecurityContext{
		AllowPrivilegeEscalation: ptr.To(false),
		ReadOnlyRootFilesystem:   ptr.To(true),
		Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
	}
	netAdmin := lockedDown.DeepCopy()
	netAdmin.Capabilities.Add = []corev1.Capability{"NET_ADMIN"}

	_, err := cs.CoreV1().Pods(ns).Create(ctx, pod("net-admin", netAdmin), dryRun)
	if !apierrors.IsForbidden(err) {
		t.Fatalf("dry-run pod with NET_ADMIN in a restricted namespace: got %v, want 403 from Pod Security admission", err)
	}
	if msg := err.Error(); !strings.Contains(msg, `violates PodSecurity "restricted:latest"`) || !strings.Contains(msg, "NET_ADMIN") {
		t.Errorf("refusal does not name PodSecurity restricted and NET_ADMIN: %s", msg)
	}

	if _, err := cs.CoreV1().Pods(ns).Create(ctx, pod("locked-down", lockedDown), dryRun); err != nil {
		t.Fatalf("dry-run compliant pod in a restricted namespace: %v", err)
	}
	if _, err := cs.CoreV1().Pods(ns).Get(ctx, "locked-down", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("dry-run pod was stored: get returned %v, want 404", err)
	}

	// The namespace's label, not something else, made the difference.
	if _, err := cs.CoreV1().Pods(privileged).Create(ctx, pod("net-admin", netAdmin), dryRun); err != nil {
		t.Errorf("dry-run pod with NET_ADMIN in a privileged namespace: %v", err)
	}
}
