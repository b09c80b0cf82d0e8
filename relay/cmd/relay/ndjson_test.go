package main

import (
	"bufio"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tunnel-dev/tunnel/relay/api"
)

// submit -f FILE.ndjson enqueues every line's job, all or none, and an
// error names the line at fault.
func TestJobsSubmitNDJSON(t *testing.T) {
	s, p, srv := startForCLI(t)
	ctx := context.Background()
	write := func(name, body string) string {
		f := filepath.Join(s.dir, name)
		if err := os.WriteFile(f, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		return f
	}
	count := func(q string) int {
		l, err := p.api(s).List(ctx, api.ListOptions{Queue: q})
		if err != nil {
			t.Fatal(err)
		}
		return len(l.Jobs)
	}

	good := write("good.ndjson", `{"queue":"nd","payload_text":"one","max_attempts":2}

{"payload_text":"two"}
{"queue":"nd","payload":"dGhyZWU=","idempotency_key":"k3"}
`)
	code, out, errOut := runCLI(t, "jobs", srv, "submit", "-f", good, "-q", "nd")
	if code != 0 {
		t.Fatalf("submit -f good.ndjson: exit %d: %s", code, errOut)
	}
	var got []string
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		var j api.Job
		if err := json.Unmarshal(sc.Bytes(), &j); err != nil || j.ID == "" || j.Queue != "nd" {
			t.Fatalf("output line %q (%v)", sc.Text(), err)
		}
		got = append(got, string(j.Payload))
	}
	if strings.Join(got, ",") != "one,two,three" || count("nd") != 3 {
		t.Fatalf("printed payloads %v, queue nd holds %d jobs", got, count("nd"))
	}

	for _, tt := range []struct {
		name, body string
		args       []string
		code       int
		want       string
	}{
		{"unknown field", "{\"queue\":\"bad\",\"payload_text\":\"a\"}\n{\"queue\":\"bad\",\"paylod\":\"x\"}\n", nil, 2, "line 2: json: unknown field \"paylod\""},
		{"not JSON", "{\"queue\":\"bad\"}\nhello\n", nil, 2, "line 2:"},
		{"two on a line", "{\"queue\":\"bad\"} {\"queue\":\"bad\"}\n", nil, 2, "line 1: data after the JSON job"},
		{"no queue", "{\"queue\":\"bad\"}\n\n{\"payload_text\":\"x\"}\n", nil, 2, "line 3: no queue"},
		{"refused by relay", "{\"queue\":\"bad\"}\n{\"queue\":\"bad\"}\n\n{\"queue\":\"bad\",\"lease_duration\":\"soon\"}\n", nil, 2, "line 4: relay API"},
		{"bad queue name", "{\"queue\":\"bad\"}\n{\"queue\":\"no spaces\"}\n", []string{"--ndjson"}, 2, "line 2: relay API"},
		{"flag that does not apply", "{\"queue\":\"bad\"}\n", []string{"--max-attempts", "3"}, 2, "with --ndjson each line gives its own job"},
		{"empty", "\n\n", nil, 2, "no jobs"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			name := "bad.ndjson"
			if len(tt.args) > 0 && tt.args[0] == "--ndjson" {
				name = "bad.jsonl"
			}
			f := write(name, tt.body)
			code, out, errOut := runCLI(t, append([]string{"jobs", srv, "submit", "-f", f}, tt.args...)...)
			if code != tt.code || out != "" || !strings.Contains(errOut, tt.want) {
				t.Fatalf("exit %d, stdout %q, stderr %s; want exit %d and %q", code, out, errOut, tt.code, tt.want)
			}
			if n := count("bad"); n != 0 {
				t.Fatalf("%d jobs enqueued from a bad file", n)
			}
		})
	}

	// producer-a may enqueue only to a: the refusal names the line, and
	// nothing is enqueued.
	t.Setenv("RELAY_TOKEN", "")
	asA := append([]string{"jobs", srv}, s.producerAFlags()...)
	f := write("mixed.ndjson", "{\"queue\":\"a\"}\n{\"queue\":\"b\"}\n")
	code, _, errOut = runCLI(t, append(asA, "submit", "-f", f)...)
	if code != 1 || !strings.Contains(errOut, "line 2: relay API") || count("a") != 0 {
		t.Fatalf("producer-a's mixed batch: exit %d, stderr %s, queue a holds %d", code, errOut, count("a"))
	}
}

func FuzzParseNDJSON(f *testing.F) {
	f.Add([]byte("{\"queue\":\"q\",\"payload_text\":\"x\"}\n\n{\"payload\":\"eA==\"}\n"), "d")
	f.Add([]byte("{\"queue\":1}\n"), "")
	f.Add([]byte("{} {}"), "q")
	f.Fuzz(func(t *testing.T, b []byte, def string) {
		reqs, lines, err := parseNDJSON(strings.NewReader(string(b)), def)
		if err != nil {
			if reqs != nil || lines != nil || !strings.Contains(err.Error(), "line ") && !strings.Contains(err.Error(), "no jobs") {
				t.Fatalf("error %v with %d requests", err, len(reqs))
			}
			return
		}
		if len(reqs) == 0 || len(reqs) != len(lines) {
			t.Fatalf("%d requests, %d line numbers", len(reqs), len(lines))
		}
		for i, r := range reqs {
			if r.Queue == "" || (i > 0 && lines[i] <= lines[i-1]) {
				t.Fatalf("request %d: %+v at line %d", i, r, lines[i])
			}
		}
	})
}
