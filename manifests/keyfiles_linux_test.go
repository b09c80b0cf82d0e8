//go:build linux

package manifests

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	corev1 "k8s.io/api/core/v1"

	"github.com/tunnel-dev/tunnel/keys"
)

// readKeyEnv makes the test binary, run again as a pod's user, read one
// key file as the gateway, relay and bunny read theirs.
const readKeyEnv = "MANIFESTS_TEST_READ_KEY"

func init() {
	path := os.Getenv(readKeyEnv)
	if path == "" {
		return
	}
	if _, err := keys.ReadSecretFile(path); err != nil {
		if errors.Is(err, keys.ErrKeyFileMode) {
			fmt.Println("mode:", err)
		} else {
			fmt.Println("error:", err)
		}
		os.Exit(1)
	}
	fmt.Println("ok")
	os.Exit(0)
}

// kubeletSecretVolume writes a Secret volume as kubelet's atomic writer and
// volume ownership code do for a pod: files written as root with the
// volume's defaultMode in a timestamped directory behind a ..data link;
// then, if the pod has an fsGroup, every file given that group and group
// read (kubelet's roMask, 0440, for Secret volumes).
func kubeletSecretVolume(t *testing.T, dir string, items map[string][]byte, mode os.FileMode, fsGroup *int64) {
	t.Helper()
	ts := filepath.Join(dir, "..2026_01_01_00_00_00.000000001")
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.MkdirAll(ts, 0o755))
	for name, data := range items {
		f := filepath.Join(ts, name)
		must(os.WriteFile(f, data, 0o600))
		must(os.Chmod(f, mode))
		must(os.Chown(f, 0, 0))
	}
	must(os.Symlink(filepath.Base(ts), filepath.Join(dir, "..data")))
	for name := range items {
		must(os.Symlink(filepath.Join("..data", name), filepath.Join(dir, name)))
	}
	if fsGroup == nil {
		return
	}
	must(filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err != nil || fi.Mode()&os.ModeSymlink != 0 {
			return err
		}
		if err := os.Lchown(p, -1, int(*fsGroup)); err != nil {
			return err
		}
		m := fi.Mode().Perm() | 0o440
		if fi.IsDir() {
			m |= os.ModeSetgid | 0o110
		}
		return os.Chmod(p, m)
	}))
}

// The key files as a real kubelet mounts them, read by the process as the
// pod runs it (its UID, GID and fsGroup). Without fsGroup the root-owned
// file cannot be opened at all: the control, which is why the pods set
// it. With it, each key file must be readable by the pod's user and pass
// the key-file check, which accepts kubelet's root-owned 0440 (docs/deploy.md,
// "Key files and fsGroup").
func TestKeyFilesAsKubeletMountsThem(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: it writes files as kubelet does (owned by root) and reads them as the pod's UID")
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	root, err := os.MkdirTemp("", "kubelet-volumes-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(root) })
	if err := os.Chmod(root, 0o755); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(root, "reader")
	copyFile(t, self, bin, 0o755)

	checked := 0
	for _, o := range overlays {
		b := build(t, o.dir)
		for _, p := range b.pods() {
			for _, v := range p.spec.Volumes {
				if v.Secret == nil {
					continue
				}
				item := keys.PrivateKeyFile
				if !strings.HasPrefix(v.Secret.SecretName, "tunnel-keys") {
					item = keys.IdentityKeyFile
				}
				name := strings.ReplaceAll(o.dir, "/", "-") + "-" + p.name + "-" + v.Name
				read := func(fsGroup *int64) string {
					dir := filepath.Join(root, name, fmt.Sprint(fsGroup != nil))
					kubeletSecretVolume(t, dir, map[string][]byte{item: []byte("not read for its contents\n")}, os.FileMode(*v.Secret.DefaultMode), fsGroup)
					return runAs(t, bin, p.spec, fsGroup, filepath.Join(dir, item))
				}
				if got := read(nil); !strings.HasPrefix(got, "error:") || !strings.Contains(got, "permission denied") {
					t.Errorf("%s: without fsGroup the pod's user read %s: %q; the control expects permission denied", name, item, got)
				}
				fsGroup := p.spec.SecurityContext.FSGroup
				if fsGroup == nil {
					t.Errorf("%s: no fsGroup: UID %d cannot open the root-owned %s", name, *p.spec.SecurityContext.RunAsUser, item)
					continue
				}
				if got := read(fsGroup); got != "ok" {
					t.Errorf("%s: the pod's user reading %s with fsGroup %d: %q", name, item, *fsGroup, got)
				}
				checked++
			}
		}
	}
	if checked == 0 {
		t.Fatal("no Secret volume in any overlay")
	}
	t.Logf("%d Secret volumes: unreadable without fsGroup, read and accepted as the pod's user with it", checked)
}

// runAs runs the reader as the pod's user, group and fsGroup.
func runAs(t *testing.T, bin string, spec *corev1.PodSpec, fsGroup *int64, path string) string {
	t.Helper()
	sc := spec.SecurityContext
	cred := &syscall.Credential{Uid: uint32(*sc.RunAsUser), Gid: uint32(*sc.RunAsGroup), Groups: []uint32{}}
	if fsGroup != nil {
		cred.Groups = []uint32{uint32(*fsGroup)}
	}
	cmd := exec.Command(bin, "-test.run=^$")
	cmd.Env = append(os.Environ(), readKeyEnv+"="+path)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	out, _ := cmd.CombinedOutput()
	return strings.TrimSpace(string(out))
}

func copyFile(t *testing.T, from, to string, mode os.FileMode) {
	t.Helper()
	in, err := os.Open(from)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	out, err := os.OpenFile(to, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, mode)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(out, in); err != nil {
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
}
