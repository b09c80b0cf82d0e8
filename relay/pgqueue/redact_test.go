package pgqueue_test

import (
	"strings"
	"testing"

	"github.com/tunnel-dev/tunnel/relay/pgqueue"
)

// FuzzRedactDSN: whatever the DSN, redacting it never panics, and a
// password in a URL's user part never survives it.
func FuzzRedactDSN(f *testing.F) {
	for _, s := range []string{"postgres://u:pw1234@h/db", "postgres://u@h:x/db?password=abcd", "host=h password=abcd", "postgres://", "::@@//"} {
		f.Add(s, "s3cret")
	}
	f.Fuzz(func(t *testing.T, dsn, pw string) {
		_ = pgqueue.RedactDSN(dsn)
		if len(pw) < 4 || strings.ContainsAny(pw, "@/:?#%") || strings.Contains("postgres://u:@h/db", pw) {
			return
		}
		if got := pgqueue.RedactDSN("postgres://u:" + pw + "@h/db"); strings.Contains(got, pw) {
			t.Fatalf("RedactDSN kept the password: %q", got)
		}
	})
}
