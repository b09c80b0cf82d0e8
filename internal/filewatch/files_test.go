package filewatch

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// ReadFiles reads a file, or a directory's *.yaml and *.yml files in name
// order, following links and skipping hidden and other files; a directory
// with none is an error naming it.
func TestReadFiles(t *testing.T) {
	dir := t.TempDir()
	write := func(name, body string) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("b.yml", "b")
	write("a.yaml", "a")
	write(".hidden.yaml", "hidden")
	write("notes.txt", "notes")
	if err := os.Mkdir(filepath.Join(dir, "sub.yaml"), 0o700); err != nil {
		t.Fatal(err)
	}
	target := filepath.Join(t.TempDir(), "elsewhere")
	if err := os.WriteFile(target, []byte("linked"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(target, filepath.Join(dir, "c.yaml")); err != nil {
		t.Fatal(err)
	}
	files, err := ReadFiles("things", dir)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, f := range files {
		got = append(got, filepath.Base(f.Name)+"="+string(f.Data))
	}
	if strings.Join(got, " ") != "a.yaml=a b.yml=b c.yaml=linked" {
		t.Fatalf("read %v", got)
	}
	one, err := ReadFiles("things", filepath.Join(dir, "notes.txt"))
	if err != nil || len(one) != 1 || string(one[0].Data) != "notes" {
		t.Fatalf("a file named directly: %v %v", one, err)
	}
	// The digest follows names and contents.
	before := Digest(files)
	write("a.yaml", "A")
	after, _ := ReadFiles("things", dir)
	if Digest(after) == before {
		t.Fatal("a changed file left the digest alone")
	}
	empty := t.TempDir()
	if _, err := ReadFiles("things", empty); err == nil || !strings.Contains(err.Error(), "things directory "+empty+" holds no .yaml") {
		t.Fatalf("an empty directory: %v", err)
	}
	if _, err := ReadFiles("things", filepath.Join(dir, "missing")); err == nil || !strings.Contains(err.Error(), "reading things file") {
		t.Fatalf("a missing file: %v", err)
	}
}
