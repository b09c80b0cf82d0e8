package kubelet

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"testing"
)

// Volume is a directory kubelet keeps a Secret's items in: each version in
// a new timestamped directory, an atomic rename of a "..data" symlink onto
// it, and one "name -> ..data/name" symlink per item.
type Volume struct {
	Dir string
	// Mode is every file's mode, as a volume's defaultMode; 0 is 0400.
	Mode fs.FileMode

	mu      sync.Mutex
	version int
	current string
	names   map[string]bool
}

// Publish replaces the directory's items with items.
func (k *Volume) Publish(t testing.TB, items map[string][]byte) {
	t.Helper()
	if err := k.Write(items); err != nil {
		t.Fatal(err)
	}
}

// Write replaces the directory's items with items, as kubelet's atomic
// writer does.
func (k *Volume) Write(items map[string][]byte) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	mode := k.Mode
	if mode == 0 {
		mode = 0o400
	}
	if err := os.MkdirAll(k.Dir, 0o755); err != nil {
		return err
	}
	k.version++
	ts := fmt.Sprintf("..2026_01_01_00_00_00.%d", 1000+k.version)
	if err := os.Mkdir(filepath.Join(k.Dir, ts), 0o755); err != nil {
		return err
	}
	for name, b := range items {
		p := filepath.Join(k.Dir, ts, name)
		if err := os.WriteFile(p, b, 0o600); err != nil {
			return err
		}
		if err := os.Chmod(p, mode); err != nil {
			return err
		}
	}
	tmp := filepath.Join(k.Dir, "..data_tmp")
	_ = os.Remove(tmp)
	if err := os.Symlink(ts, tmp); err != nil {
		return err
	}
	if err := os.Rename(tmp, filepath.Join(k.Dir, "..data")); err != nil {
		return err
	}
	for name := range items {
		link := filepath.Join(k.Dir, name)
		if _, err := os.Lstat(link); err != nil {
			if err := os.Symlink(filepath.Join("..data", name), link); err != nil {
				return err
			}
		}
	}
	for name := range k.names {
		if _, ok := items[name]; !ok {
			_ = os.Remove(filepath.Join(k.Dir, name))
		}
	}
	k.names = map[string]bool{}
	for name := range items {
		k.names[name] = true
	}
	if k.current != "" {
		_ = os.RemoveAll(filepath.Join(k.Dir, k.current))
	}
	k.current = ts
	return nil
}
