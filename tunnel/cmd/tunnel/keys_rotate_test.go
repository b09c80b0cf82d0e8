package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"github.com/tunnel-dev/tunnel/internal/kubelet"
	"github.com/tunnel-dev/tunnel/internal/pinger"
	"github.com/tunnel-dev/tunnel/keys"
	"github.com/tunnel-dev/tunnel/keys/kube"
	"github.com/tunnel-dev/tunnel/keys/store"
	"github.com/tunnel-dev/tunnel/manifests/kubetest"
	"github.com/tunnel-dev/tunnel/tunnel/tunneltest"
)

// kubeAPI is one kube-apiserver + etcd for this package's tests.
var kubeAPI kubetest.Shared

// cliEnv makes the test binary run the tunnel command instead of the
// tests, so that a test can run the command as a process and kill it.
const cliEnv = "KEYS_ROTATE_TEST_RUN_TUNNEL"

func TestMain(m *testing.M) {
	if os.Getenv(cliEnv) == "1" {
		os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
	}
	code := m.Run()
	if err := kubeAPI.Stop(); err != nil {
		fmt.Fprintln(os.Stderr, err)
	}
	os.Exit(code)
}

// storesWithKeys makes two key directories as a rotation of aks finds them,
// with no gateways: for the tests that stop before any wait.
func storesWithKeys(t *testing.T) (aks, eks string, aksKey keys.PrivateKey) {
	t.Helper()
	root := t.TempDir()
	aks, eks = filepath.Join(root, "aks"), filepath.Join(root, "eks")
	a, e := newPrivate(t), newPrivate(t)
	write := func(dir string, items map[string][]byte) {
		if _, err := store.NewDir(dir).Write(context.Background(), "", store.Change{Set: items}); err != nil {
			t.Fatal(err)
		}
	}
	write(aks, map[string][]byte{keys.PrivateKeyFile: []byte(a.Base64()), "peer.eks.pub": keys.FormatPeerKeys(e.Public())})
	write(eks, map[string][]byte{keys.PrivateKeyFile: []byte(e.Base64()), "peer.aks.pub": keys.FormatPeerKeys(a.Public())})
	return aks, eks, a
}

func newPrivate(t *testing.T) keys.PrivateKey {
	t.Helper()
	k, err := keys.GeneratePrivateKey()
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// Bad flags and bad stores are usage errors (exit 2) that name the flag
// or the item, and nothing is written.
func TestKeysRotateUsage(t *testing.T) {
	aks, eks, _ := storesWithKeys(t)
	ok := []string{"keys", "rotate", "--store", "dir:" + aks, "--peer-store", "dir:" + eks, "--status", "http://127.0.0.1:1", "--peer-status", "http://127.0.0.1:2"}
	with := func(flag, value string) []string {
		args := append([]string(nil), ok...)
		for i := range args {
			if args[i] == flag {
				args[i+1] = value
				return args
			}
		}
		return append(args, flag, value)
	}
	zero := dirStore(aks, map[string][]byte{keys.PrivateKeyFile: []byte(strings.Repeat("A", 43) + "=")})
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"no status", ok[:6], "--status and --peer-status are required"},
		{"bad store", with("--store", "/etc/tunnel/keys"), "--store: store address"},
		{"bad peer store", with("--peer-store", "secret:Tunnel/keys"), "--peer-store: store address"},
		{"same store", with("--peer-store", "dir:"+aks), "--store and --peer-store are both"},
		{"bad status", with("--status", "ftp://x"), "--status: status address"},
		{"bad peer status", with("--peer-status", "pod:nope"), "--peer-status: status address"},
		{"bad stop", with("--stop-after", "swtich"), "--stop-after: unknown step"},
		{"peer store twice", append(slices.Clone(ok), "--peer-store", "dir:"+eks, "--peer-status", "http://127.0.0.1:3"), "is given twice"},
		{"a peer status short", append(slices.Clone(ok), "--peer-store", "dir:"+filepath.Join(t.TempDir(), "eks-b")), "give one --peer-status for each --peer-store"},
		{"bad peer name", with("--peer-name", "AKS"), "--peer-name"},
		{"bad timeout", with("--timeout", "0s"), "--timeout"},
		{"no kubeconfig context", append(with("--store", "secret:nowhere/tunnel/tunnel-keys"), "--kubeconfig", filepath.Join(t.TempDir(), "none")), "--store: loading kubeconfig context \"nowhere\""},
		{"weak key in the store", append(with("--store", zero), "--dry-run"), "private.key: bad key in the store: parsing private key: weak key: all zeros"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := []store.Version{tunneltest.Load(t, store.NewDir(aks)).Version, tunneltest.Load(t, store.NewDir(eks)).Version}
			code, _, errOut := runCLI(t, tc.args...)
			if code != 2 || !strings.Contains(errOut, tc.want) {
				t.Fatalf("exit %d, %s\nwant exit 2 and %q", code, errOut, tc.want)
			}
			after := []store.Version{tunneltest.Load(t, store.NewDir(aks)).Version, tunneltest.Load(t, store.NewDir(eks)).Version}
			if before[0] != after[0] || before[1] != after[1] {
				t.Fatal("a refused command wrote")
			}
		})
	}
}

// dirStore makes a copy of dir's items with some replaced, and returns its
// address.
func dirStore(dir string, replace map[string][]byte) string {
	out := dir + "-copy"
	items, _ := store.NewDir(dir).Load(context.Background())
	ch := store.Change{Set: map[string][]byte{}}
	for k, v := range items.Items {
		ch.Set[k] = v
	}
	for k, v := range replace {
		ch.Set[k] = v
	}
	if _, err := store.NewDir(out).Write(context.Background(), "", ch); err != nil {
		panic(err)
	}
	return "dir:" + out
}

// --dry-run prints the state and the steps that would follow, and writes
// nothing; flags come from the environment too.
func TestKeysRotateDryRun(t *testing.T) {
	aks, eks, a := storesWithKeys(t)
	before := tunneltest.Load(t, store.NewDir(aks)).Version
	t.Setenv("TUNNEL_ROTATE_PEER_STORE", "dir:"+eks)
	code, out, errOut := runCLI(t, "keys", "rotate", "--store", "dir:"+aks, "--dry-run")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	for _, want := range []string{
		"state: settled (this side's key " + a.Public().Fingerprint(),
		"prepare  dir:" + aks + ": next.key := a new key",
		"stage    dir:" + eks + ": peer.aks.pub := [" + a.Public().Fingerprint() + ", a new key]; then wait for the peer's gateway to list a new key",
		"switch   dir:" + aks + ": private.key := next.key (a new key), delete next.key",
		"revoke   dir:" + eks + ": peer.aks.pub := [a new key]; then wait for the peer's gateway to drop " + a.Public().Fingerprint(),
		"(dry run: nothing was written)",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("plan lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, a.Base64()) {
		t.Fatal("the plan shows a private key")
	}
	if tunneltest.Load(t, store.NewDir(aks)).Version != before {
		t.Fatal("--dry-run wrote")
	}
}

// rotateArgs are the arguments of a rotation of r against o through their
// admin URLs.
func rotateArgs(r, o *tunneltest.Side, extra ...string) []string {
	return append([]string{"keys", "rotate", "--store", "dir:" + r.KeyDir, "--peer-store", "dir:" + o.KeyDir,
		"--status", r.AdminURL(), "--peer-status", o.AdminURL(), "--timeout", "20s"}, extra...)
}

// The command killed (SIGKILL) right after each of its writes, then run
// again: both sides keep a working key at every kill, traffic flows, and
// the run after ends where an uninterrupted rotation does, with the key
// the killed run prepared.
func TestKeysRotateKilledAfterEachWrite(t *testing.T) {
	p := tunneltest.StartPair(t, tunneltest.Options{})
	tunneltest.MonitorWorkingKeys(t, p)
	ping := pinger.Start(t, p.Forward(t), 10*time.Millisecond)
	ping.Flowing(t, 10*time.Second, 5, "before")
	for i, step := range []string{"prepare", "stage", "switch", "revoke"} {
		r, o := p.AKS, p.EKS
		if i%2 == 1 {
			r, o = p.EKS, p.AKS
		}
		t.Run(step+" "+r.Name, func(t *testing.T) {
			killAfterWrite(t, step, rotateArgs(r, o, "--log-format", "json")...)
			tunneltest.CheckWorkingKeys(t, p, "killed after "+step)
			ping.Flowing(t, 10*time.Second, 10, "killed after "+step)

			snap := tunneltest.Load(t, r.Store())
			want := tunneltest.PublicOf(t, snap, keys.PrivateKeyFile)
			if snap.Has(keys.NextKeyFile) {
				want = tunneltest.PublicOf(t, snap, keys.NextKeyFile)
			}
			var extra []string
			if step == "revoke" {
				// The stores are final; --resume only confirms (a plain
				// run would start the next rotation).
				extra = append(extra, "--resume")
			}
			code, out, errOut := runCLI(t, rotateArgs(r, o, extra...)...)
			if code != 0 {
				t.Fatalf("resuming after %s: exit %d\n%s\n%s", step, code, out, errOut)
			}
			t.Logf("resumed after %s:\n%s", step, out)
			tunneltest.CheckSettled(t, r, o, want)
			tunneltest.CheckWorkingKeys(t, p, "resumed after "+step)
			ping.Flowing(t, 10*time.Second, 10, "resumed after "+step)
		})
	}
	t.Logf("longest silence of a datagram every 10ms over four killed rotations: %v", ping.Gap())
}

// killAfterWrite runs the command as a process and SIGKILLs it as soon as
// it logs the write of step.
func killAfterWrite(t *testing.T, step string, args ...string) {
	t.Helper()
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append(os.Environ(), cliEnv+"=1")
	var stdout bytes.Buffer
	cmd.Stdout = &stdout
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	killed := make(chan struct{})
	var logs strings.Builder
	go func() {
		defer close(killed)
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			logs.WriteString(sc.Text() + "\n")
			var line struct{ Msg, Step string }
			if json.Unmarshal(sc.Bytes(), &line) == nil && line.Msg == "wrote" && line.Step == step {
				_ = cmd.Process.Kill()
				for sc.Scan() { // drain
				}
				return
			}
		}
	}()
	select {
	case <-killed:
	case <-time.After(60 * time.Second):
		_ = cmd.Process.Kill()
		<-killed
		t.Fatalf("no write of %s within 60s", step)
	}
	err = cmd.Wait()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != -1 {
		t.Fatalf("the command was not killed by the signal (%v): it ended before writing %s?\n%s\n%s", err, step, stdout.String(), logs.String())
	}
	printed := logs.String() + stdout.String()
	snap := tunneltest.Load(t, store.NewDir(strings.TrimPrefix(args[3], "dir:")))
	for _, item := range []string{keys.PrivateKeyFile, keys.NextKeyFile} {
		if b, ok := snap.Items[item]; ok && strings.Contains(printed, strings.TrimSpace(string(b))) {
			t.Fatalf("the command printed %s", item)
		}
	}
}

// A rotation of both sides where the stores are Secrets in two "clusters"
// (two namespaces, two kubeconfig contexts) and each gateway's status is
// read through the API server's pod proxy, run as a user that has only
// the Role manifests/base/rbac-rotate.yaml ships. A kubelet stand-in
// publishes each Secret into its gateway's key directory with the ..data
// swap. A user without the Role gets 403 and a message naming it.
func TestKeysRotateThroughKubernetes(t *testing.T) {
	env := kubeAPI.Env(t)
	admin := kubernetes.NewForConfigOrDie(env.AdminConfig())
	ns := map[string]string{"aks": env.Namespace(t, nil), "eks": env.Namespace(t, nil)}
	for _, n := range ns {
		tunneltest.ApplyRBAC(t, admin, n, filepath.Join("..", "..", "..", "manifests", "base", "rbac-rotate.yaml"))
	}
	ip, proxy := tunneltest.ProxyableIP()
	if !proxy {
		ip = "127.0.0.1"
		t.Log("no global unicast address on this machine, which the pod proxy needs: reading status from the admin URLs instead")
	}
	p := tunneltest.StartPair(t, tunneltest.Options{
		AdminHost: ip,
		Layout: func(t testing.TB, side, dir string, items map[string][]byte) {
			tunneltest.CreateSecret(t, admin, ns[side], "tunnel-keys", items)
			tunneltest.SyncSecret(t, admin, ns[side], "tunnel-keys", &kubelet.Volume{Dir: dir, Mode: 0o400})
		},
	})
	status := map[string]string{}
	for _, s := range []*tunneltest.Side{p.AKS, p.EKS} {
		status[s.Name] = s.AdminURL()
		if proxy {
			port := strings.TrimPrefix(s.AdminURL(), "http://"+ip+":")
			tunneltest.GatewayPod(t, admin, ns[s.Name], "gateway-"+s.Name, map[string]string{"app.kubernetes.io/name": "tunnel-gateway"}, ip)
			status[s.Name] = "pod:" + s.Name + "/" + ns[s.Name] + "/app.kubernetes.io/name=tunnel-gateway:" + port
		}
	}
	kubeconfig := writeKubeconfig(t, env)
	rotator := kubernetes.NewForConfigOrDie(mustUserConfig(t, env, "rotator", "tunnel-key-rotators"))
	for _, n := range ns {
		sec := kube.NewSecret(rotator.CoreV1().RESTClient(), n, "tunnel-keys", "")
		tunneltest.WaitForAccess(t, "the Role to take effect", func() error { _, err := sec.Load(context.Background()); return err })
	}
	ping := pinger.Start(t, p.Forward(t), 10*time.Millisecond)
	ping.Flowing(t, 10*time.Second, 5, "before")
	tunneltest.MonitorWorkingKeys(t, p)

	args := func(r, o *tunneltest.Side, ctxR, ctxO string) []string {
		return []string{"keys", "rotate", "--kubeconfig", kubeconfig, "--timeout", "30s",
			"--store", "secret:" + ctxR + "/" + ns[r.Name] + "/tunnel-keys", "--peer-store", "secret:" + ctxO + "/" + ns[o.Name] + "/tunnel-keys",
			"--status", strings.Replace(status[r.Name], "pod:"+r.Name+"/", "pod:"+ctxR+"/", 1),
			"--peer-status", strings.Replace(status[o.Name], "pod:"+o.Name+"/", "pod:"+ctxO+"/", 1)}
	}
	// Without the Role: 403, named.
	code, out, errOut := runCLI(t, args(p.AKS, p.EKS, "mallory", "mallory")...)
	if code == 0 || !strings.Contains(errOut, "forbidden") || !strings.Contains(errOut, "rbac-rotate.yaml") || !strings.Contains(errOut, `"mallory"`) {
		t.Fatalf("mallory: exit %d\n%s\n%s", code, out, errOut)
	}
	t.Logf("without the Role: exit %d: %s", code, errOut)

	for _, pair := range [][2]*tunneltest.Side{{p.AKS, p.EKS}, {p.EKS, p.AKS}} {
		r, o := pair[0], pair[1]
		privBefore := tunneltest.Load(t, r.Store()).Items[keys.PrivateKeyFile]
		ping.ResetGap()
		began := time.Now()
		code, out, errOut := runCLI(t, args(r, o, r.Name, o.Name)...)
		if code != 0 {
			t.Fatalf("rotating %s: exit %d\n%s\n%s", r.Name, code, out, errOut)
		}
		t.Logf("rotating %s through the API server (%v):\n%s", r.Name, time.Since(began).Round(time.Millisecond), out)
		snap := tunneltest.Load(t, r.Store()) // what kubelet published
		newKey := tunneltest.PublicOf(t, snap, keys.PrivateKeyFile)
		if !strings.Contains(out, "done: "+r.Name+"'s public key is "+newKey.String()) {
			t.Fatalf("output does not end with the new key %s", newKey)
		}
		tunneltest.CheckSettled(t, r, o, newKey)
		ping.Flowing(t, 10*time.Second, 10, "after rotating "+r.Name)
		t.Logf("longest silence rotating %s: %v", r.Name, ping.Gap())
		// Only public keys crossed: the peer's Secret holds none of r's
		// private keys, old or new.
		for item, v := range tunneltest.Load(t, o.Store()).Items {
			for _, priv := range [][]byte{privBefore, snap.Items[keys.PrivateKeyFile]} {
				if bytes.Contains(v, bytes.TrimSpace(priv)) {
					t.Fatalf("%s's private key is in %s's store (%s)", r.Name, o.Name, item)
				}
			}
		}
	}
}

func mustUserConfig(t *testing.T, env *kubetest.Env, user string, groups ...string) *rest.Config {
	t.Helper()
	cfg, err := env.UserConfig(user, groups...)
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// writeKubeconfig writes a kubeconfig with contexts aks and eks for the
// rotator (group tunnel-key-rotators) and mallory for a user without it.
func writeKubeconfig(t *testing.T, env *kubetest.Env) string {
	t.Helper()
	kc := clientcmdapi.NewConfig()
	for _, u := range []struct {
		name   string
		groups []string
	}{{"rotator", []string{"tunnel-key-rotators"}}, {"mallory", []string{"developers"}}} {
		cfg := mustUserConfig(t, env, u.name, u.groups...)
		kc.Clusters["test"] = &clientcmdapi.Cluster{Server: cfg.Host, CertificateAuthorityData: cfg.CAData}
		kc.AuthInfos[u.name] = &clientcmdapi.AuthInfo{ClientCertificateData: cfg.CertData, ClientKeyData: cfg.KeyData}
	}
	kc.Contexts["aks"] = &clientcmdapi.Context{Cluster: "test", AuthInfo: "rotator"}
	kc.Contexts["eks"] = &clientcmdapi.Context{Cluster: "test", AuthInfo: "rotator"}
	kc.Contexts["mallory"] = &clientcmdapi.Context{Cluster: "test", AuthInfo: "mallory"}
	path := filepath.Join(t.TempDir(), "kubeconfig")
	if err := clientcmd.WriteToFile(*kc, path); err != nil {
		t.Fatal(err)
	}
	return path
}
