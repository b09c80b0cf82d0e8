package dirsync

import (
	"path/filepath"
	"strings"
	"testing"
)

func TestSync(t *testing.T) {
	dir := t.TempDir()
	if err := Sync(dir); err != nil {
		t.Fatalf("syncing a directory: %v", err)
	}
	missing := filepath.Join(dir, "missing")
	if err := Sync(missing); err == nil || !strings.Contains(err.Error(), missing) {
		t.Fatalf("syncing a missing directory: %v; want an error naming it", err)
	}
}
