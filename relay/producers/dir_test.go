package producers

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tunnel-dev/tunnel/internal/kubelet"
)

// A directory of producers files (a mounted Secret with a key per team)
// is one configuration: files are added and removed with no restart, a
// name or credential in two files is refused naming both, and the caps of
// relay's workers directory hold.
func TestDirectory(t *testing.T) {
	vol := &kubelet.Volume{Dir: t.TempDir()}
	tokA, hA := token(t)
	tokB, hB := token(t)
	entry := func(name string, h TokenHash, q string) []byte {
		return []byte("producers:\n" + Entry(name, nil, []TokenHash{h}, map[string][]Action{q: {Enqueue, Read}}))
	}
	vol.Publish(t, map[string][]byte{
		"billing.yaml": entry("billing", hA, "invoices"),
		"ops.yml":      entry("ops", hB, "reports"),
		"README.txt":   []byte("not a producers file"),
	})
	ctx, cancel := context.WithCancel(context.Background())
	w, err := Watch(ctx, WatchOptions{Path: vol.Dir, Every: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cancel(); <-w.Done() })
	for tok, want := range map[string]string{tokA: "billing", tokB: "ops"} {
		if p, ok := w.Config().LookupToken(tok); !ok || p.Name != want {
			t.Fatalf("token of %s: %v %v", want, p, ok)
		}
	}

	// Removing a file revokes its producers at the next look.
	vol.Publish(t, map[string][]byte{"billing.yaml": entry("billing", hA, "invoices")})
	w.Check()
	waitRevoked := time.Now().Add(5 * time.Second)
	for {
		if _, ok := w.Config().LookupToken(tokB); !ok {
			break
		}
		if time.Now().After(waitRevoked) {
			t.Fatal("ops's token still works after its file was removed")
		}
		w.Check()
		time.Sleep(20 * time.Millisecond)
	}

	dup := []struct {
		name  string
		files map[string][]byte
		want  []string
	}{
		{"a name in two files", map[string][]byte{
			"a.yaml": entry("billing", hA, "invoices"),
			"b.yaml": entry("billing", hB, "reports"),
		}, []string{"b.yaml:2: producers[0].name", `"billing" is also the name of`, "a.yaml:2"}},
		{"a token in two files", map[string][]byte{
			"a.yaml": entry("billing", hA, "invoices"),
			"b.yaml": entry("ops", hA, "reports"),
		}, []string{"b.yaml:3: producers[0].tokens[0]", "is also producer billing's (at", "a.yaml:3"}},
	}
	for _, tt := range dup {
		t.Run(tt.name, func(t *testing.T) {
			v := &kubelet.Volume{Dir: t.TempDir()}
			v.Publish(t, tt.files)
			_, err := Load(v.Dir)
			if err == nil {
				t.Fatal("loaded")
			}
			for _, s := range tt.want {
				if !strings.Contains(err.Error(), s) {
					t.Fatalf("error %q does not say %q", err, s)
				}
			}
		})
	}

	t.Run("caps", func(t *testing.T) {
		big := t.TempDir()
		over := filepath.Join(big, "big.yaml")
		if err := os.WriteFile(over, nil, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Truncate(over, MaxFileSize+1); err != nil {
			t.Fatal(err)
		}
		if _, err := Load(big); err == nil || !strings.Contains(err.Error(), over) || !strings.Contains(err.Error(), strconv.Itoa(MaxFileSize)) {
			t.Fatalf("a file past the cap: %v", err)
		}
		many := t.TempDir()
		for i := range MaxDirSize/MaxFileSize + 1 {
			p := filepath.Join(many, "p"+strconv.Itoa(i)+".yaml")
			if err := os.WriteFile(p, nil, 0o600); err != nil {
				t.Fatal(err)
			}
			if err := os.Truncate(p, MaxFileSize); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := Load(many); err == nil || !strings.Contains(err.Error(), strconv.Itoa(MaxDirSize)) {
			t.Fatalf("a directory past the cap: %v", err)
		}
	})
}
