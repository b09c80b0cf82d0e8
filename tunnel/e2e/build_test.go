package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
)

// binaries builds the project's commands once per test binary run.
type binaries struct {
	once sync.Once
	dir  string
	err  error
	out  []byte
}

var bins binaries

// bin returns the path of a built command ("tunnel", "relay", "bunny").
func bin(t testing.TB, name string) string {
	t.Helper()
	bins.once.Do(func() {
		bins.dir, bins.err = os.MkdirTemp("", "tunnel-e2e-bin-")
		if bins.err != nil {
			return
		}
		pkgs := []string{"github.com/tunnel-dev/tunnel/tunnel/cmd/tunnel"}
		for _, c := range []string{"relay", "bunny"} {
			if files, _ := filepath.Glob(filepath.Join("..", "..", c, "cmd", c, "*.go")); len(files) > 0 {
				pkgs = append(pkgs, "github.com/tunnel-dev/tunnel/"+c+"/cmd/"+c)
			}
		}
		cmd := exec.Command("go", append([]string{"build", "-o", bins.dir + "/"}, pkgs...)...)
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		bins.out, bins.err = cmd.CombinedOutput()
	})
	if bins.err != nil {
		t.Fatalf("building commands: %v\n%s", bins.err, bins.out)
	}
	p := filepath.Join(bins.dir, name)
	if _, err := os.Stat(p); err != nil {
		t.Skipf("%s is not built yet (no %s/cmd/%s)", name, name, name)
	}
	return p
}

func TestMain(m *testing.M) {
	code := m.Run()
	if bins.dir != "" {
		os.RemoveAll(bins.dir)
	}
	os.Exit(code)
}
