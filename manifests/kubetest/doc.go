// Package kubetest runs a real Kubernetes API server for Go tests: etcd and
// kube-apiserver, built from the Go module proxy by build-assets.sh in this
// directory, started on free loopback ports with RBAC authorization and the
// default admission plugins (so Pod Security admission judges pods as a real
// cluster would).
//
// There is no kubelet, scheduler or controller-manager: objects are stored,
// validated, admitted and authorized, but Deployments never make pods,
// deleted namespaces stay Terminating, and no "default" ServiceAccount is
// created (the ServiceAccount admission plugin is off for that reason).
//
// A test starts a server of its own with [Start], which stops it at cleanup:
//
//	env := kubetest.Start(t)
//	cs := kubernetes.NewForConfigOrDie(env.AdminConfig())
//
// A package whose tests can share one server (a start takes about 5 s) keeps a
// [Shared] owned by its TestMain; the first test that asks for it starts it:
//
//	var kube kubetest.Shared
//
//	func TestMain(m *testing.M) {
//		code := m.Run()
//		if err := kube.Stop(); err != nil {
//			fmt.Fprintln(os.Stderr, err)
//		}
//		os.Exit(code)
//	}
//
//	func TestSecrets(t *testing.T) {
//		env := kube.Env(t)
//		ns := env.Namespace(t, map[string]string{"pod-security.kubernetes.io/enforce": "restricted"})
//		...
//	}
//
// When the binaries have not been built, [Start] and [Shared.Env] skip the
// test, naming the script to run; when the environment variable CI is "true"
// they fail it instead, so CI cannot pass by testing nothing.
//
// The admin config authenticates with a client certificate in the
// system:masters group. [Env.UserConfig] makes configs for other users, with
// the groups given and no bindings, to test what a Role does and does not
// allow.
//
// Server processes are started so that the kernel kills them if the test
// process dies (Linux), and are stopped apiserver first, then etcd: with etcd
// gone first, the apiserver's graceful shutdown waits on it.
package kubetest
