package kubetest

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// Start starts a server for tb alone and stops it when tb's cleanups run,
// printing the servers' logs first if tb failed. When the binaries are
// missing it skips tb, or fails it if $CI is "true".
func Start(tb testing.TB) *Env {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	began := time.Now()
	e, err := New(ctx)
	if err != nil {
		skipOrFail(tb, err)
		return nil // only when tb's Skip and Fatal return, as fakes' do
	}
	tb.Cleanup(func() {
		if tb.Failed() {
			tb.Log(e.Logs())
		}
		if err := e.Stop(); err != nil {
			tb.Errorf("kubetest: %v", err)
		}
	})
	tb.Logf("kubetest: kube-apiserver %s at %s ready in %v", KubernetesVersion, e.Host(), time.Since(began).Round(time.Millisecond))
	return e
}

// skipOrFail ends tb because no server could be started: a skip when only
// the binaries are missing outside CI, else a failure.
func skipOrFail(tb testing.TB, err error) {
	tb.Helper()
	if errors.Is(err, ErrAssetsMissing) && os.Getenv("CI") != "true" {
		tb.Skipf("kubetest: %v", err)
		return
	}
	if errors.Is(err, ErrAssetsMissing) {
		tb.Fatalf("kubetest: CI=true, so failing rather than skipping: %v", err)
		return
	}
	tb.Fatalf("kubetest: starting kube-apiserver: %v", err)
}

// Shared is one server for all the tests of a package. Its zero value is
// ready to use: the first [Shared.Env] starts the server, and TestMain calls
// [Shared.Stop] after m.Run. Tests sharing it should work in namespaces of
// their own ([Env.Namespace]).
//
// If the test process dies without reaching Stop (a panic, a -timeout), the
// servers die with it (on Linux) but their temp directory stays behind.
type Shared struct {
	mu      sync.Mutex
	started bool
	stopped bool
	env     *Env
	err     error
}

// Env returns the shared server, starting it on first use. Missing binaries
// skip or fail tb as in [Start]; a failed start fails every test that asks.
func (s *Shared) Env(tb testing.TB) *Env {
	tb.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopped {
		tb.Fatal("kubetest: Shared.Env called after Shared.Stop")
		return nil
	}
	if !s.started {
		s.started = true
		ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
		began := time.Now()
		s.env, s.err = New(ctx)
		cancel()
		if s.err == nil {
			tb.Logf("kubetest: shared kube-apiserver %s at %s ready in %v", KubernetesVersion, s.env.Host(), time.Since(began).Round(time.Millisecond))
		}
	}
	if s.err != nil {
		skipOrFail(tb, s.err)
		return nil
	}
	return s.env
}

// Stop stops the server if one was started. Call it from TestMain after
// m.Run.
func (s *Shared) Stop() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stopped = true
	if s.env == nil {
		return nil
	}
	err := s.env.Stop()
	s.env = nil
	if err != nil {
		return fmt.Errorf("kubetest: stopping the shared server: %w", err)
	}
	return nil
}

// Namespace creates a namespace with a generated name (kubetest-…) and the
// given labels, and returns its name; it fails tb if it cannot. It is not
// deleted at cleanup: with no namespace controller, a deleted namespace
// stays Terminating, and generated names never collide.
//
// For Pod Security admission, label it
// pod-security.kubernetes.io/enforce=restricted (or baseline, privileged).
func (e *Env) Namespace(tb testing.TB, labels map[string]string) string {
	tb.Helper()
	cs, err := kubernetes.NewForConfig(e.admin)
	if err != nil {
		tb.Fatalf("kubetest: making a clientset: %v", err)
		return ""
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ns, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{
		ObjectMeta: metav1.ObjectMeta{GenerateName: "kubetest-", Labels: labels},
	}, metav1.CreateOptions{})
	if err != nil {
		tb.Fatalf("kubetest: creating a namespace labelled %v: %v", labels, err)
		return ""
	}
	return ns.Name
}
