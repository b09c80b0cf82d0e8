package metricstest

import (
	"bufio"
	"fmt"
	"io"
	"net/http"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// Scrape is one read of a /metrics endpoint in Prometheus text format.
type Scrape struct {
	// Samples maps a series as the exposition writes it (name, then its
	// labels sorted: relay_refused_total{reason="version"}) to its value.
	Samples map[string]float64
	// Types maps each metric family's name to its type (counter, gauge,
	// histogram…).
	Types map[string]string
}

// Get scrapes url (…/metrics).
func Get(t testing.TB, url string) Scrape {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("scraping %s: %v", url, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("scraping %s: %s", url, resp.Status)
	}
	s, err := Parse(resp.Body)
	if err != nil {
		t.Fatalf("scraping %s: %v", url, err)
	}
	return s
}

// Parse reads the text exposition format.
func Parse(r io.Reader) (Scrape, error) {
	s := Scrape{Samples: map[string]float64{}, Types: map[string]string{}}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		if f := strings.Fields(line); len(f) == 4 && f[0] == "#" && f[1] == "TYPE" {
			s.Types[f[2]] = f[3]
			continue
		}
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			return s, fmt.Errorf("line %d: no value: %q", n, line)
		}
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			return s, fmt.Errorf("line %d: %w", n, err)
		}
		s.Samples[line[:i]] = v
	}
	return s, sc.Err()
}

// Require reports, all at once, each series that the scrape lacks. A
// series is written as the exposition writes it; "name=value" also
// checks the value (relay_workers=1).
func (s Scrape) Require(t testing.TB, series ...string) {
	t.Helper()
	var missing []string
	for _, want := range series {
		key, val, checkVal := strings.Cut(want, "}=")
		if checkVal {
			key += "}"
		} else if !strings.Contains(want, "{") {
			key, val, checkVal = strings.Cut(want, "=")
		}
		got, ok := s.Samples[key]
		switch {
		case !ok:
			missing = append(missing, key)
		case checkVal && strconv.FormatFloat(got, 'g', -1, 64) != val:
			missing = append(missing, fmt.Sprintf("%s = %s (it is %v)", key, val, got))
		}
	}
	if len(missing) > 0 {
		t.Errorf("/metrics lacks:\n  %s", strings.Join(missing, "\n  "))
	}
}

// RequireFamilies reports each metric family name the scrape lacks.
func (s Scrape) RequireFamilies(t testing.TB, names ...string) {
	t.Helper()
	var missing []string
	for _, n := range names {
		if _, ok := s.Types[n]; !ok {
			missing = append(missing, n)
		}
	}
	if len(missing) > 0 {
		t.Errorf("/metrics lacks the families %s", strings.Join(missing, ", "))
	}
}

// Documented returns the metric names a document mentions in backticks
// that start with prefix (`relay_jobs{queue,state}` gives relay_jobs).
func Documented(t testing.TB, path, prefix string) []string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	re := regexp.MustCompile("`(" + regexp.QuoteMeta(prefix) + "[a-z0-9_]+)[{`]")
	var names []string
	for _, m := range re.FindAllStringSubmatch(string(b), -1) {
		if !slices.Contains(names, m[1]) {
			names = append(names, m[1])
		}
	}
	if len(names) == 0 {
		t.Fatalf("%s names no %s… metric", path, prefix)
	}
	return names
}
