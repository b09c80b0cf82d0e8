package pgtest

import (
	"errors"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
)

// findBin is the directory holding initdb and pg_ctl: PATH first, then the
// newest /usr/lib/postgresql/*/bin.
func findBin() (string, error) {
	if p, err := exec.LookPath("initdb"); err == nil {
		if _, err := exec.LookPath("pg_ctl"); err == nil {
			return filepath.Dir(p), nil
		}
	}
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	// Newest version first: "16" after "15", "10" after "9".
	slices.SortFunc(dirs, func(a, b string) int {
		if len(a) != len(b) {
			return len(b) - len(a)
		}
		return strings.Compare(b, a)
	})
	for _, d := range dirs {
		if isExec(filepath.Join(d, "initdb")) && isExec(filepath.Join(d, "pg_ctl")) {
			return d, nil
		}
	}
	return "", errors.New("PostgreSQL server binaries (initdb, pg_ctl) are not on PATH or under /usr/lib/postgresql/*/bin; install Debian's postgresql package")
}

func isExec(p string) bool {
	_, err := exec.LookPath(p)
	return err == nil
}
