package server

import (
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"testing"
)

// Every reason and call the code counts is one metrics.go creates at
// zero; a new one added without it would appear only at its first event.
func TestCountedLabelsAreKnown(t *testing.T) {
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	reason := regexp.MustCompile(`(?:refused\.WithLabelValues|\.refuse)\("([a-z_]+)"`)
	var seen int
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range reason.FindAllSubmatch(b, -1) {
			seen++
			if !slices.Contains(refusalReasons(), string(m[1])) {
				t.Errorf("%s counts refusal reason %q, which refusalReasons lacks", f, m[1])
			}
		}
	}
	if seen < len(refusalReasons()) {
		t.Fatalf("found %d counted reasons in the source; the pattern no longer matches it", seen)
	}
}
