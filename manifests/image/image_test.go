package image

import (
	"archive/tar"
	"bytes"
	"debug/elf"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// TestImageTarball builds the image from the real commands, writes the
// tarball, reads it back as `docker load` would, and checks what is in it.
func TestImageTarball(t *testing.T) {
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	bins := map[string]string{}
	for n, pkg := range Commands() {
		if files, _ := filepath.Glob(filepath.Join(root, pkg, "*.go")); len(files) == 0 {
			t.Fatalf("%s: no Go files in %s", n, pkg)
		}
		bin := filepath.Join(dir, n)
		cmd := exec.Command("go", "build", "-trimpath", "-ldflags", "-s -w", "-o", bin, pkg)
		cmd.Dir = root
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("building %s: %v\n%s", n, err, out)
		}
		bins[n] = bin
	}
	img, err := Build(Options{Binaries: bins, Entrypoint: "tunnel"})
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(dir, "image.tar")
	if err := WriteTarball(file, "tunnel:test", img); err != nil {
		t.Fatal(err)
	}
	tag, _ := name.NewTag("tunnel:test")
	back, err := tarball.ImageFromPath(file, &tag)
	if err != nil {
		t.Fatalf("reading the tarball back: %v", err)
	}
	cf, err := back.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if cf.Config.User != "65532:65532" {
		t.Errorf("user %q, want the fixed non-root 65532:65532", cf.Config.User)
	}
	if strings.Join(cf.Config.Entrypoint, " ") != "/usr/local/bin/tunnel" || cf.OS != "linux" {
		t.Errorf("entrypoint %v, os %s", cf.Config.Entrypoint, cf.OS)
	}
	layers, err := back.Layers()
	if err != nil || len(layers) != 1 {
		t.Fatalf("%d layers, want 1 (%v)", len(layers), err)
	}
	rc, err := layers[0].Uncompressed()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	tr := tar.NewReader(rc)
	var files []string
	contents := map[string][]byte{}
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if h.Typeflag == tar.TypeDir {
			continue
		}
		files = append(files, h.Name)
		b, _ := io.ReadAll(tr)
		contents[h.Name] = b
		if strings.HasPrefix(h.Name, "usr/local/bin/") && (h.Mode != 0o555 || h.Uid != 0) {
			t.Errorf("%s: mode %o uid %d; binaries are root-owned and read-only", h.Name, h.Mode, h.Uid)
		}
	}
	want := []string{"etc/group", "etc/passwd"}
	for n := range bins {
		want = append(want, "usr/local/bin/"+n)
	}
	sort.Strings(want)
	sort.Strings(files)
	if strings.Join(files, ",") != strings.Join(want, ",") {
		t.Fatalf("image files %v, want exactly %v (no shell, nothing else)", files, want)
	}
	// Each binary is static (no ELF interpreter) and runs.
	for n := range bins {
		b := contents["usr/local/bin/"+n]
		f, err := elf.NewFile(bytes.NewReader(b))
		if err != nil {
			t.Fatalf("%s: not an ELF binary: %v", n, err)
		}
		for _, p := range f.Progs {
			if p.Type == elf.PT_INTERP {
				t.Errorf("%s is dynamically linked; the image has no libc", n)
			}
		}
		out := filepath.Join(dir, "extracted-"+n)
		if err := os.WriteFile(out, b, 0o755); err != nil {
			t.Fatal(err)
		}
		if o, err := exec.Command(out, "--help").CombinedOutput(); err != nil {
			t.Errorf("%s --help from the image: %v\n%s", n, err, o)
		}
	}
}
