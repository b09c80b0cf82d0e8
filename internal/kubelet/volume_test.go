package kubelet

import (
	"os"
	"path/filepath"
	"testing"
)

// Each Publish swaps ..data onto a new version: the items read through
// their links, a dropped item's link goes, and the old version is removed.
func TestVolumePublish(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "keys")
	v := &Volume{Dir: dir}
	v.Publish(t, map[string][]byte{"a": []byte("1"), "b": []byte("2")})
	first, err := os.Readlink(filepath.Join(dir, "..data"))
	if err != nil {
		t.Fatal(err)
	}
	v.Publish(t, map[string][]byte{"a": []byte("3")})
	if b, err := os.ReadFile(filepath.Join(dir, "a")); err != nil || string(b) != "3" {
		t.Fatalf("a: %q %v", b, err)
	}
	if link, err := os.Readlink(filepath.Join(dir, "a")); err != nil || link != filepath.Join("..data", "a") {
		t.Fatalf("a is not a link into ..data: %q %v", link, err)
	}
	if _, err := os.Lstat(filepath.Join(dir, "b")); !os.IsNotExist(err) {
		t.Fatalf("dropped item b is still there: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, first)); !os.IsNotExist(err) {
		t.Fatalf("the old version %s is still there: %v", first, err)
	}
	fi, err := os.Stat(filepath.Join(dir, "a"))
	if err != nil || fi.Mode().Perm() != 0o400 {
		t.Fatalf("mode %v %v, want the default 0400", fi.Mode(), err)
	}
}
