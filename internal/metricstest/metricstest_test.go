package metricstest

import (
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

const sample = `# HELP relay_refused_total Refused.
# TYPE relay_refused_total counter
relay_refused_total{reason="version"} 0
relay_refused_total{reason="bad_frame"} 3
# TYPE relay_workers gauge
relay_workers 1
# TYPE relay_call_duration_seconds histogram
relay_call_duration_seconds_bucket{call="lease",le="+Inf"} 0
relay_call_duration_seconds_count{call="lease"} 0
`

func TestParseAndRequire(t *testing.T) {
	s, err := Parse(strings.NewReader(sample))
	if err != nil {
		t.Fatal(err)
	}
	if s.Samples[`relay_refused_total{reason="bad_frame"}`] != 3 || s.Types["relay_call_duration_seconds"] != "histogram" || len(s.Samples) != 5 {
		t.Fatalf("parsed %+v", s)
	}
	s.Require(t, `relay_refused_total{reason="version"}`, `relay_refused_total{reason="bad_frame"}=3`, "relay_workers=1")
	s.RequireFamilies(t, "relay_refused_total", "relay_call_duration_seconds")

	// Missing series and wrong values are all reported.
	rec := &recorder{TB: t}
	s.Require(rec, `relay_refused_total{reason="overloaded"}`, "relay_workers=2", "relay_jobs")
	s.RequireFamilies(rec, "relay_jobs")
	for _, want := range []string{`relay_refused_total{reason="overloaded"}`, "relay_workers = 2 (it is 1)", "relay_jobs", "families relay_jobs"} {
		if !strings.Contains(rec.msg, want) {
			t.Errorf("report lacks %q:\n%s", want, rec.msg)
		}
	}
	if _, err := Parse(strings.NewReader("relay_workers one\n")); err == nil {
		t.Error("a malformed value parsed")
	}
}

func TestDocumented(t *testing.T) {
	path := filepath.Join(t.TempDir(), "doc.md")
	if err := os.WriteFile(path, []byte("| `relay_jobs{queue,state}` | depth |\n| `relay_workers`, `relay_jobs…` |\nnot `bunny_x`\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if got := Documented(t, path, "relay_"); !reflect.DeepEqual(got, []string{"relay_jobs", "relay_workers"}) {
		t.Fatalf("Documented = %v", got)
	}
}

// recorder collects what a check reports instead of failing the test.
type recorder struct {
	testing.TB
	msg string
}

func (r *recorder) Helper()                   {}
func (r *recorder) Errorf(f string, a ...any) { r.msg += fmt.Sprintf(f, a...) + "\n" }
