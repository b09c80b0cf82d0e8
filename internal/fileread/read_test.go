package fileread

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestRead(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "f")
	if err := os.WriteFile(p, []byte("12345678"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		path string
		max  int64
		want string // "" for success
		is   error
	}{
		{"under the cap", p, 9, "", nil},
		{"exactly the cap", p, 8, "", nil},
		{"over the cap", p, 7, "larger than 7 bytes", ErrTooLarge},
		{"missing", filepath.Join(dir, "nope"), 10, "no such file", fs.ErrNotExist},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b, err := Read(tc.path, tc.max)
			if tc.want == "" {
				if err != nil || string(b) != "12345678" {
					t.Fatalf("Read = %q, %v", b, err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) || !errors.Is(err, tc.is) {
				t.Fatalf("err = %v, want %q (%v)", err, tc.want, tc.is)
			}
			if tc.is == ErrTooLarge && !strings.Contains(err.Error(), tc.path) {
				t.Errorf("err %v does not name the file", err)
			}
		})
	}
}
