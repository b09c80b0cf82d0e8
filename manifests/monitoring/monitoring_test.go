package monitoring

import (
	"encoding/json"
	"fmt"
	"maps"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/tunnel-dev/tunnel/internal/metricstest"
	"github.com/tunnel-dev/tunnel/internal/testutil"
	"github.com/tunnel-dev/tunnel/keys"
)

// query is one PromQL expression, where it is, and for a panel the
// legend that names its series.
type query struct{ where, expr, legend string }

type dashboard struct {
	UID        string `json:"uid"`
	Templating struct {
		List []struct {
			Name, Type, Query string
		} `json:"list"`
	} `json:"templating"`
	Panels []struct {
		ID         int    `json:"id"`
		Type       string `json:"type"`
		Title      string `json:"title"`
		Datasource *struct {
			UID string `json:"uid"`
		} `json:"datasource"`
		Targets []struct {
			Expr       string `json:"expr"`
			Legend     string `json:"legendFormat"`
			Datasource struct {
				UID string `json:"uid"`
			} `json:"datasource"`
		} `json:"targets"`
	} `json:"panels"`
}

type ruleFile struct {
	Groups []struct {
		Name  string `yaml:"name"`
		Rules []struct {
			Alert       string            `yaml:"alert"`
			Expr        string            `yaml:"expr"`
			For         string            `yaml:"for"`
			Labels      map[string]string `yaml:"labels"`
			Annotations map[string]string `yaml:"annotations"`
		} `yaml:"rules"`
	} `yaml:"groups"`
}

// queries reads every expression of the dashboard and the rules, and
// checks their shape: unique panel ids and alert names, every panel on
// the datasource variable, every alert with a severity and a summary.
func queries(t *testing.T) []query {
	t.Helper()
	var qs []query
	b, err := os.ReadFile("dashboard.json")
	if err != nil {
		t.Fatal(err)
	}
	var d dashboard
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatalf("dashboard.json: %v", err)
	}
	if d.UID == "" || len(d.Templating.List) != 1 || d.Templating.List[0].Name != "datasource" || d.Templating.List[0].Query != "prometheus" {
		t.Errorf("dashboard.json: want a uid and one variable, datasource, of type prometheus")
	}
	ids := map[int]bool{}
	for _, p := range d.Panels {
		if ids[p.ID] {
			t.Errorf("dashboard.json: panel id %d twice", p.ID)
		}
		ids[p.ID] = true
		if p.Type == "row" {
			continue
		}
		if p.Datasource == nil || p.Datasource.UID != "${datasource}" || len(p.Targets) == 0 {
			t.Errorf("dashboard.json: panel %q: want queries on ${datasource}", p.Title)
		}
		for _, tg := range p.Targets {
			if tg.Datasource.UID != "${datasource}" {
				t.Errorf("dashboard.json: panel %q: a query not on ${datasource}", p.Title)
			}
			qs = append(qs, query{"dashboard panel " + p.Title, tg.Expr, tg.Legend})
		}
	}
	b, err = os.ReadFile("alerts.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var rf ruleFile
	dec := yaml.NewDecoder(strings.NewReader(string(b)))
	dec.KnownFields(true)
	if err := dec.Decode(&rf); err != nil {
		t.Fatalf("alerts.yaml: %v", err)
	}
	names := map[string]bool{}
	for _, g := range rf.Groups {
		for _, r := range g.Rules {
			if r.Alert == "" || names[r.Alert] {
				t.Errorf("alerts.yaml: group %s: alert name %q empty or given twice", g.Name, r.Alert)
			}
			names[r.Alert] = true
			if s := r.Labels["severity"]; s != "critical" && s != "warning" {
				t.Errorf("alerts.yaml: %s: severity %q, want critical or warning", r.Alert, s)
			}
			if r.Annotations["summary"] == "" || r.Annotations["description"] == "" {
				t.Errorf("alerts.yaml: %s: want a summary and a description", r.Alert)
			}
			if r.For != "" {
				if _, err := time.ParseDuration(r.For); err != nil {
					t.Errorf("alerts.yaml: %s: for %q: %v", r.Alert, r.For, err)
				}
			}
			qs = append(qs, query{"alert " + r.Alert, r.Expr, ""})
		}
	}
	if len(names) == 0 {
		t.Fatal("alerts.yaml holds no alert")
	}
	return qs
}

var (
	metricRE   = regexp.MustCompile(`\b((?:tunnel|relay|bunny)_[a-z0-9_]+)\b(\{[^}]*\})?`)
	matcherRE  = regexp.MustCompile(`([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)\s*"([^"]*)"`)
	byRE       = regexp.MustCompile(`\b(?:by|without)\s*\(([^)]*)\)`)
	plainAltRE = regexp.MustCompile(`^[a-z0-9_]+(\|[a-z0-9_]+)*$`)
	legendRE   = regexp.MustCompile(`\{\{\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*\}\}`)
)

// scrapeLabels are the labels Prometheus adds to every series.
var scrapeLabels = []string{"instance", "job", "le"}

// problems lists each metric q queries that m lacks, each label it
// matches or groups by that no series of its metrics has, and each label
// value it asks for by name that no series has.
func problems(m metricstest.Scrape, q query) []string {
	var out []string
	fail := func(format string, args ...any) { out = append(out, q.where+": "+fmt.Sprintf(format, args...)) }
	found := metricRE.FindAllStringSubmatch(q.expr, -1)
	if len(found) == 0 {
		fail("queries no tunnel_, relay_ or bunny_ metric: %s", q.expr)
		return out
	}
	var names []string
	for _, f := range found {
		name := f[1]
		if !family(m, name) {
			fail("%s is not in the binaries' /metrics", name)
			continue
		}
		names = append(names, name)
		for _, mt := range matcherRE.FindAllStringSubmatch(f[2], -1) {
			label, op, val := mt[1], mt[2], mt[3]
			values := labelValues(m, name, label)
			if len(values) == 0 {
				fail("no series of %s has the label %s", name, label)
				continue
			}
			var want []string
			switch {
			case op == "=":
				want = []string{val}
			case op == "=~" && plainAltRE.MatchString(val):
				want = strings.Split(val, "|")
			}
			for _, v := range want {
				if !slices.Contains(values, v) {
					fail("no series of %s has %s=%q (it has %v)", name, label, v, values)
				}
			}
		}
	}
	var grouped []string
	for _, by := range byRE.FindAllStringSubmatch(q.expr, -1) {
		for _, label := range strings.Split(by[1], ",") {
			label = strings.TrimSpace(label)
			grouped = append(grouped, label)
			if label == "" || slices.Contains(scrapeLabels, label) {
				continue
			}
			if !slices.ContainsFunc(names, func(n string) bool { return len(labelValues(m, n, label)) > 0 }) {
				fail("groups by %s, which none of %v has", label, names)
			}
		}
	}
	// A legend names labels the result keeps: those grouped by, or,
	// without an aggregation, the metric's own.
	for _, l := range legendRE.FindAllStringSubmatch(q.legend, -1) {
		label := l[1]
		kept := slices.Contains(grouped, label)
		if len(grouped) == 0 {
			kept = slices.Contains(scrapeLabels, label) || slices.ContainsFunc(names, func(n string) bool { return len(labelValues(m, n, label)) > 0 })
		}
		if !kept {
			fail("legend names {{%s}}, which the query does not keep", label)
		}
	}
	return out
}

// family reports whether m serves the metric name, a histogram's or
// summary's _bucket, _sum and _count included.
func family(m metricstest.Scrape, name string) bool {
	if _, ok := m.Types[name]; ok {
		return true
	}
	for _, suffix := range []string{"_bucket", "_sum", "_count"} {
		if base, ok := strings.CutSuffix(name, suffix); ok {
			if typ := m.Types[base]; typ == "histogram" || typ == "summary" {
				return true
			}
		}
	}
	return false
}

// labelValues lists the values label has on the series of name.
func labelValues(m metricstest.Scrape, name, label string) []string {
	re := regexp.MustCompile(`[{,]` + regexp.QuoteMeta(label) + `="((?:[^"\\]|\\.)*)"`)
	var out []string
	for s := range m.Samples {
		rest, ok := strings.CutPrefix(s, name+"{")
		if !ok {
			continue
		}
		if v := re.FindStringSubmatch("{" + rest); v != nil && !slices.Contains(out, v[1]) {
			out = append(out, v[1])
		}
	}
	return out
}

// Every metric, label and label value the dashboard and the alert rules
// query is served by the binaries, once a job has gone through them.
func TestQueriedMetricsExist(t *testing.T) {
	qs := queries(t)
	m := runAll(t)
	for _, q := range qs {
		for _, p := range problems(m, q) {
			t.Error(p)
		}
	}
}

// The checks catch what they are for.
func TestProblems(t *testing.T) {
	m, err := metricstest.Parse(strings.NewReader(`# TYPE relay_jobs gauge
relay_jobs{queue="default",state="queued"} 0
# TYPE relay_job_wait_seconds histogram
relay_job_wait_seconds_bucket{le="1"} 0
relay_job_wait_seconds_sum 0
relay_job_wait_seconds_count 0
`))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ expr, legend, want string }{
		{`sum by (queue) (relay_jobs)`, "{{queue}}", ""},
		{`sum by (queue) (relay_jobs)`, "{{state}}", "legend names {{state}}"},
		{`relay_jobs`, "{{instance}} {{state}}", ""},
		{`relay_jobs`, "{{stat}}", "legend names {{stat}}"},
	} {
		got := strings.Join(problems(m, query{"test", tc.expr, tc.legend}), "; ")
		if (tc.want == "") != (got == "") || !strings.Contains(got, tc.want) {
			t.Errorf("%s with legend %s: got %q, want a problem containing %q", tc.expr, tc.legend, got, tc.want)
		}
	}
	for expr, want := range map[string]string{
		`sum(relay_job)`:                   "relay_job is not in",
		`relay_jobs{stat="queued"}`:        "has the label stat",
		`relay_jobs{state="queud"}`:        `has state="queud"`,
		`relay_jobs{state=~"queued|dead"}`: `has state="dead"`,
		`sum by (queues) (relay_jobs)`:     "groups by queues",
		`up`:                               "queries no",
		`relay_jobs{state=~"q.*"} > 0`:     "",
		`sum by (le) (rate(relay_job_wait_seconds_bucket[5m]))`: "",
		`sum by (queue, state) (relay_jobs{state="queued"})`:    "",
	} {
		got := strings.Join(problems(m, query{"test", expr, ""}), "; ")
		if (want == "") != (got == "") || !strings.Contains(got, want) {
			t.Errorf("%s: got %q, want a problem containing %q", expr, got, want)
		}
	}
}

// freeAddr is a loopback address nothing listens on now.
func freeAddr(t *testing.T, network string) string {
	t.Helper()
	if network == "udp" {
		pc, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer pc.Close()
		return pc.LocalAddr().String()
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// start runs a binary until the test ends; its output is shown if the
// test failed.
func start(t *testing.T, bin string, args ...string) {
	t.Helper()
	var logs testutil.Buffer
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = &logs, &logs
	cmd.Env = append(os.Environ(), "QUIC_GO_DISABLE_RECEIVE_BUFFER_WARNING=true")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Errorf("%s did not exit", filepath.Base(bin))
		}
		if t.Failed() {
			t.Logf("%s %v:\n%s", filepath.Base(bin), args, logs.String())
		}
	})
}

// ready waits for url to answer 200.
func ready(t *testing.T, url string) {
	t.Helper()
	testutil.Eventually(t, 30*time.Second, url, func() bool {
		resp, err := http.Get(url)
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
}

// runAll builds tunnel, relay and bunny, runs a gateway, relay, bunny
// and bunny's echo handler on loopback, passes a job through relay and
// bunny, and returns the three /metrics scrapes as one.
func runAll(t *testing.T) metricstest.Scrape {
	t.Helper()
	if _, err := exec.LookPath("go"); err != nil {
		t.Skip("no go command to build the binaries with")
	}
	bin := t.TempDir()
	build := exec.Command("go", "build", "-o", bin+"/", "./tunnel/cmd/tunnel", "./relay/cmd/relay", "./bunny/cmd/bunny")
	build.Dir = filepath.Join("..", "..")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	dir := t.TempDir()

	// relay, with bunny in its workers file.
	relayPin, err := keys.WriteIdentity(filepath.Join(dir, "relay"), "relay", false)
	if err != nil {
		t.Fatal(err)
	}
	bunnyPin, err := keys.WriteIdentity(filepath.Join(dir, "bunny"), "bunny", false)
	if err != nil {
		t.Fatal(err)
	}
	workers := filepath.Join(dir, "workers.yaml")
	if err := os.WriteFile(workers, fmt.Appendf(nil, "workers:\n  - name: bunny\n    pins: [%s]\n    queues:\n      default: [lease, heartbeat, complete, fail]\n", bunnyPin), 0o644); err != nil {
		t.Fatal(err)
	}
	// A producer with a token, to submit the job with.
	token := filepath.Join(dir, "smoke.token")
	entry, err := exec.Command(filepath.Join(bin, "relay"), "producers", "token", "smoke", "-q", "default", "--out", token).Output()
	if err != nil {
		t.Fatalf("relay producers token: %v", err)
	}
	producersFile := filepath.Join(dir, "producers.yaml")
	if err := os.WriteFile(producersFile, append([]byte("producers:\n"), entry...), 0o644); err != nil {
		t.Fatal(err)
	}
	quicAddr, relayAPI, relayAdmin := freeAddr(t, "udp"), freeAddr(t, "tcp"), freeAddr(t, "tcp")
	start(t, filepath.Join(bin, "relay"), "serve", "--db", filepath.Join(dir, "relay.db"), "--listen", quicAddr, "--http", relayAPI, "--admin", relayAdmin,
		"--identity-cert", filepath.Join(dir, "relay", keys.IdentityCertFile), "--identity-key", filepath.Join(dir, "relay", keys.IdentityKeyFile),
		"--workers", workers, "--producers", producersFile)
	ready(t, "http://"+relayAdmin+"/readyz")

	// bunny, its queue handled by bunny's own echo handler.
	echoAddr, bunnyAdmin := freeAddr(t, "tcp"), freeAddr(t, "tcp")
	start(t, filepath.Join(bin, "bunny"), "handler", "echo", "--listen", echoAddr)
	ready(t, "http://"+echoAddr+"/healthz")
	cfg := filepath.Join(dir, "bunny.yaml")
	if err := os.WriteFile(cfg, fmt.Appendf(nil, "relay: {address: %q, pin: %q}\nidentity: {certFile: %s, keyFile: %s}\nadmin: {listen: %q}\nqueues:\n  - name: default\n    http: {url: \"http://%s/run\"}\n",
		quicAddr, relayPin, filepath.Join(dir, "bunny", keys.IdentityCertFile), filepath.Join(dir, "bunny", keys.IdentityKeyFile), bunnyAdmin, echoAddr), 0o644); err != nil {
		t.Fatal(err)
	}
	start(t, filepath.Join(bin, "bunny"), "run", "--config", cfg)
	ready(t, "http://"+bunnyAdmin+"/readyz")

	// A job through relay and bunny.
	submit := exec.Command(filepath.Join(bin, "relay"), "jobs", "--server", "https://"+relayAPI, "--server-pin", relayPin.String(), "--token-file", token,
		"submit", "-q", "default", "-p", "hello")
	if out, err := submit.CombinedOutput(); err != nil {
		t.Fatalf("relay jobs submit: %v\n%s", err, out)
	}
	testutil.Eventually(t, 30*time.Second, "the job to succeed", func() bool {
		return metricstest.Get(t, "http://"+bunnyAdmin+"/metrics").Samples[`bunny_jobs_succeeded_total{queue="default"}`] == 1
	})

	// A gateway.
	gwDir := filepath.Join(dir, "gateway")
	if _, err := keys.WriteKeyPair(filepath.Join(gwDir, "keys"), false); err != nil {
		t.Fatal(err)
	}
	peer, err := keys.GeneratePrivateKey()
	if err != nil {
		t.Fatal(err)
	}
	gwAdmin := freeAddr(t, "tcp")
	gwCfg := filepath.Join(gwDir, "gateway.yaml")
	if err := os.WriteFile(gwCfg, fmt.Appendf(nil, `interface:
  name: montest
  privateKeyFile: %s
  addresses: [10.99.0.1]
  uapiDir: %s
peers:
  - name: bunny
    publicKey: %s
    allowedIPs: [10.99.0.2/32]
expose:
  - {name: relay, protocol: udp, port: 7443, target: %q, peers: [bunny]}
forward:
  - {name: back, protocol: tcp, listen: "127.0.0.1:0", peer: bunny, to: "10.99.0.2:80"}
admin: {listen: %q}
`, filepath.Join(gwDir, "keys", keys.PrivateKeyFile), filepath.Join(gwDir, "run"), peer.Public(), quicAddr, gwAdmin), 0o644); err != nil {
		t.Fatal(err)
	}
	start(t, filepath.Join(bin, "tunnel"), "gateway", "--config", gwCfg)
	ready(t, "http://"+gwAdmin+"/readyz")

	all := metricstest.Scrape{Samples: map[string]float64{}, Types: map[string]string{}}
	for _, addr := range []string{gwAdmin, relayAdmin, bunnyAdmin} {
		s := metricstest.Get(t, "http://"+addr+"/metrics")
		maps.Copy(all.Samples, s.Samples)
		maps.Copy(all.Types, s.Types)
	}
	return all
}
