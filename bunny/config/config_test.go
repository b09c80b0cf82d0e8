package config

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tunnel-dev/tunnel/keys"
)

const testPin = "sha256/47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU="

// valid is the documented example; each case below breaks one field.
const valid = `relay:
  address: 127.0.0.1:7443
  pin: ` + testPin + `
identity:
  certFile: /etc/bunny/identity/identity.crt
  keyFile: /etc/bunny/identity/identity.key
admin:
  listen: 127.0.0.1:9090
concurrency: 4
shutdownGrace: 30s
queues:
  - name: default
    exec:
      command: ["/bin/sh", "-c", "tr a-z A-Z"]
      timeout: 5m
      maxOutput: 1MiB
  - name: web
    http:
      url: http://127.0.0.1:8081/run
      timeout: 1m
      maxOutput: 1MiB
`

// exec.env names what the command may see of bunny's environment.
func TestExecEnv(t *testing.T) {
	doc := strings.Replace(valid, "      timeout: 5m\n", "      timeout: 5m\n      env: [PATH, LANG, _X1]\n", 1)
	c, err := Parse([]byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(c.Queues[0].Exec.Env, ","); got != "PATH,LANG,_X1" {
		t.Fatalf("env %q", got)
	}
}

func TestParseValid(t *testing.T) {
	c, err := Parse([]byte(valid))
	if err != nil {
		t.Fatal(err)
	}
	if c.Relay.Address != "127.0.0.1:7443" || c.Relay.Pin.String() != testPin || c.Concurrency != 4 ||
		c.ShutdownGrace != 30*time.Second || c.Admin.Listen != "127.0.0.1:9090" || len(c.Queues) != 2 {
		t.Fatalf("parsed %+v", c)
	}
	e, h := c.Queues[0].Exec, c.Queues[1].HTTP
	if e == nil || strings.Join(e.Command, " ") != "/bin/sh -c tr a-z A-Z" || e.Timeout != 5*time.Minute || e.MaxOutput != 1<<20 || e.Env != nil {
		t.Errorf("exec %+v", e)
	}
	if h == nil || h.URL != "http://127.0.0.1:8081/run" || h.Timeout != time.Minute || h.MaxOutput != 1<<20 {
		t.Errorf("http %+v", h)
	}
	var b strings.Builder
	c.Describe(&b)
	for _, want := range []string{"127.0.0.1:7443", testPin, "at most 4 jobs", `"tr a-z A-Z"`, "http://127.0.0.1:8081/run", "30s"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("Describe lacks %q:\n%s", want, b.String())
		}
	}
}

func TestParseDefaults(t *testing.T) {
	c, err := Parse([]byte(`relay: {address: "relay.example:7443", pinFile: /keys/relay.crt}
identity: {certFile: a.crt, keyFile: a.key}
queues: [{name: q, exec: {command: [cat]}}, {name: h, http: {url: "https://svc/run"}}]
`))
	if err != nil {
		t.Fatal(err)
	}
	if c.Concurrency != DefaultConcurrency || c.ShutdownGrace != DefaultShutdownGrace || c.Admin.Listen != DefaultAdminListen ||
		c.Relay.PinFile != "/keys/relay.crt" || c.Queues[0].Exec.Timeout != DefaultExecTimeout ||
		c.Queues[0].Exec.MaxOutput != DefaultMaxOutput || c.Queues[1].HTTP.Timeout != DefaultHTTPTimeout {
		t.Fatalf("defaults: %+v", c)
	}
	c, err = Parse([]byte(strings.Replace(valid, "listen: 127.0.0.1:9090", `listen: ""`, 1)))
	if err != nil || c.Admin.Listen != "" {
		t.Fatalf("listen \"\" should disable the admin server: %v, %+v", err, c)
	}
}

// relay.address may list several ways to relay (one per gateway), in
// order; Address is the first.
func TestParseAddressList(t *testing.T) {
	c, err := Parse([]byte(strings.Replace(valid, "address: 127.0.0.1:7443", "address: [127.0.0.1:7443, \"127.0.0.2:7443\"]", 1)))
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"127.0.0.1:7443", "127.0.0.2:7443"}; !slices.Equal(c.Relay.Addresses, want) || c.Relay.Address != want[0] {
		t.Errorf("addresses %v, address %q; want %v", c.Relay.Addresses, c.Relay.Address, want)
	}
	var b strings.Builder
	c.Describe(&b)
	if !strings.Contains(b.String(), "127.0.0.1:7443, then 127.0.0.2:7443") {
		t.Errorf("describe does not list both addresses:\n%s", b.String())
	}
	one, err := Parse([]byte(valid))
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(one.Relay.Addresses, []string{"127.0.0.1:7443"}) {
		t.Errorf("one address: %v", one.Relay.Addresses)
	}
}

func TestParseErrors(t *testing.T) {
	tests := []struct {
		name, from, to string
		path           string // the field the error must name
		line           int    // and its line (0: do not check)
		msg            string
	}{
		{"empty file", valid, "", "", 0, "empty"},
		{"not yaml", valid, "relay: [", "", 0, "did not find"},
		{"unknown top field", "concurrency: 4", "concurency: 4", "concurency", 9, "unknown field"},
		{"unknown nested field", "  pin: ", "  pinn: ", "relay.pinn", 3, "unknown field"},
		{"case hint", "  certFile:", "  certfile:", "identity.certfile", 5, "did you mean \"certFile\""},
		{"duplicate field", "concurrency: 4\n", "concurrency: 4\nconcurrency: 5\n", "concurrency", 10, "twice"},
		{"relay not a mapping", "relay:\n  address: 127.0.0.1:7443\n  pin: " + testPin, "relay: x", "relay", 1, "mapping"},
		{"queues not a list", "queues:\n  - name: default", "queues: {}\nx:\n  - name: default", "queues", 0, "list"},
		{"command not a list", `command: ["/bin/sh", "-c", "tr a-z A-Z"]`, "command: /bin/true", "queues[0].exec.command", 14, "list"},
		{"missing address", "  address: 127.0.0.1:7443\n", "", "relay.address", 0, "required"},
		{"address without port", "127.0.0.1:7443", "127.0.0.1", "relay.address", 2, "host:port"},
		{"address without host", "address: 127.0.0.1:7443", "address: :7443", "relay.address", 2, "no host"},
		{"address bad port", "127.0.0.1:7443", "127.0.0.1:99999", "relay.address", 2, "port"},
		{"address port zero", "127.0.0.1:7443", "127.0.0.1:0", "relay.address", 2, "port"},
		{"address with a path", "127.0.0.1:7443", "relay/x:7443", "relay.address", 2, "not a valid host"},
		{"address list twice", "address: 127.0.0.1:7443", "address: [127.0.0.1:7443, 127.0.0.1:7443]", "relay.address[1]", 2, "listed twice"},
		{"address list bad entry", "address: 127.0.0.1:7443", "address: [127.0.0.1:7443, nowhere]", "relay.address[1]", 2, "host:port"},
		{"address list empty", "address: 127.0.0.1:7443", "address: []", "relay.address", 0, "required"},
		{"address list blank entry", "address: 127.0.0.1:7443", "address: [127.0.0.1:7443, \"\"]", "relay.address[1]", 0, "empty"},
		{"address a mapping", "address: 127.0.0.1:7443", "address: {a: b}", "relay.address", 2, "want a list"},
		{"bad pin", testPin, "sha256/nope", "relay.pin", 3, "pin"},
		{"pin and pinFile", "  pin: " + testPin, "  pin: " + testPin + "\n  pinFile: /x.crt", "relay.pin", 3, "not both"},
		{"no pin", "  pin: " + testPin, "", "relay.pin", 0, "required"},
		{"no certFile", "  certFile: /etc/bunny/identity/identity.crt\n", "", "identity.certFile", 0, "required"},
		{"no keyFile", "  keyFile: /etc/bunny/identity/identity.key\n", "", "identity.keyFile", 0, "required"},
		{"bad admin listen", "listen: 127.0.0.1:9090", "listen: nowhere", "admin.listen", 8, "host:port"},
		{"concurrency zero", "concurrency: 4", "concurrency: 0", "concurrency", 9, "1 to 1024"},
		{"concurrency huge", "concurrency: 4", "concurrency: 5000", "concurrency", 9, "1 to 1024"},
		{"concurrency word", "concurrency: 4", "concurrency: four", "concurrency", 9, "whole number"},
		{"grace negative", "shutdownGrace: 30s", "shutdownGrace: -1s", "shutdownGrace", 10, "duration"},
		{"grace unitless", "shutdownGrace: 30s", "shutdownGrace: 30", "shutdownGrace", 10, "duration"},
		{"no queues", valid[strings.Index(valid, "queues:"):], "", "queues", 0, "at least one"},
		{"queue without name", "  - name: default\n", "  - exec2: x\n", "queues[0].exec2", 12, "unknown field"},
		{"queue name empty", "  - name: default", "  - name: \"\"", "queues[0].name", 12, "required"},
		{"queue name bad", "  - name: default", "  - name: de/fault", "queues[0].name", 12, "use only"},
		{"queue name twice", "  - name: web", "  - name: default", "queues[1].name", 17, "already"},
		{"both handlers", "  - name: web\n", "  - name: web\n    exec: {command: [cat]}\n", "queues[1]", 17, "not both"},
		{"no handler", "    http:\n      url: http://127.0.0.1:8081/run\n      timeout: 1m\n      maxOutput: 1MiB\n", "", "queues[1]", 17, "required"},
		{"empty command", `command: ["/bin/sh", "-c", "tr a-z A-Z"]`, "command: []", "queues[0].exec.command", 14, "required"},
		{"empty program", `command: ["/bin/sh", "-c", "tr a-z A-Z"]`, `command: [""]`, "queues[0].exec.command[0]", 14, "empty"},
		{"exec timeout zero", "timeout: 5m", "timeout: 0s", "queues[0].exec.timeout", 15, "duration"},
		{"exec timeout bad", "timeout: 5m", "timeout: soon", "queues[0].exec.timeout", 15, "duration"},
		{"maxOutput bad", "maxOutput: 1MiB\n  - name: web", "maxOutput: lots\n  - name: web", "queues[0].exec.maxOutput", 16, "not a size"},
		{"maxOutput too big", "maxOutput: 1MiB\n  - name: web", "maxOutput: 2MiB\n  - name: web", "queues[0].exec.maxOutput", 16, "out of range"},
		{"maxOutput zero", "maxOutput: 1MiB\n  - name: web", "maxOutput: 0\n  - name: web", "queues[0].exec.maxOutput", 16, "out of range"},
		{"http no url", "      url: http://127.0.0.1:8081/run\n", "", "queues[1].http.url", 0, "required"},
		{"http relative url", "http://127.0.0.1:8081/run", "/run", "queues[1].http.url", 19, "absolute"},
		{"http bad scheme", "http://127.0.0.1:8081/run", "ftp://x/run", "queues[1].http.url", 19, "absolute"},
		{"http credentials", "http://127.0.0.1:8081/run", "http://u:p@127.0.0.1/run", "queues[1].http.url", 19, "credentials"},
		{"http timeout bad", "timeout: 1m", "timeout: 1 minute", "queues[1].http.timeout", 20, "duration"},
		{"http maxOutput bad", "maxOutput: 1MiB\n", "maxOutput: 1MiB\n", "", 0, ""}, // placeholder replaced below
		{"alias", "concurrency: 4", "concurrency: &a 4\nshutdown: *a", "shutdown", 0, ""},
		{"exec env not a name", "      timeout: 5m\n", "      timeout: 5m\n      env: [PATH, \"A=B\"]\n", "queues[0].exec.env[1]", 0, "not a variable name"},
		{"exec env bunny's own", "      timeout: 5m\n", "      timeout: 5m\n      env: [BUNNY_JOB_ID]\n", "queues[0].exec.env[0]", 0, "bunny's own"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.name == "http maxOutput bad" {
				i := strings.LastIndex(valid, "maxOutput: 1MiB")
				doc := valid[:i] + "maxOutput: -5" + valid[i+len("maxOutput: 1MiB"):]
				check(t, doc, "queues[1].http.maxOutput", 21, "not a size")
				return
			}
			doc := valid
			if tt.from == valid {
				doc = tt.to
			} else {
				if !strings.Contains(doc, tt.from) {
					t.Fatalf("test bug: %q not in the valid document", tt.from)
				}
				doc = strings.Replace(doc, tt.from, tt.to, 1)
			}
			check(t, doc, tt.path, tt.line, tt.msg)
		})
	}
}

func check(t *testing.T, doc, path string, line int, msg string) {
	t.Helper()
	c, err := Parse([]byte(doc))
	if err == nil {
		t.Fatalf("no error; parsed %+v from\n%s", c, doc)
	}
	var es Errors
	if !errors.As(err, &es) || len(es) == 0 {
		t.Fatalf("error %v is not an Errors", err)
	}
	for _, e := range es {
		if e.Path == path && (line == 0 || e.Line == line) && strings.Contains(e.Msg, msg) {
			if path != "" && !strings.Contains(err.Error(), path) {
				t.Errorf("message %q does not name %s", err, path)
			}
			return
		}
	}
	t.Fatalf("want an error at %s (line %d) mentioning %q; got:\n%v", path, line, msg, err)
}

// Every problem is reported, not just the first.
func TestParseReportsAll(t *testing.T) {
	doc := strings.NewReplacer("concurrency: 4", "concurrency: 0", "shutdownGrace: 30s", "shutdownGrace: x", "timeout: 5m", "timeout: y").Replace(valid)
	_, err := Parse([]byte(doc))
	var es Errors
	if !errors.As(err, &es) || len(es) != 3 {
		t.Fatalf("want 3 problems, got %v", err)
	}
	if !strings.Contains(err.Error(), "3 problems") {
		t.Errorf("message %q", err)
	}
}

// An unknown field is reported with the rest, with "did you mean".
func TestParseUnknownFieldWithTheRest(t *testing.T) {
	doc := strings.NewReplacer("concurrency: 4", "concurency: 4", "shutdownGrace: 30s", "shutdownGrace: x").Replace(valid)
	_, err := Parse([]byte(doc))
	var es Errors
	if !errors.As(err, &es) || len(es) != 2 || !strings.Contains(es[0].Error(), `concurency: unknown field (did you mean "concurrency"?)`) || es[1].Path != "shutdownGrace" || es[0].Line >= es[1].Line {
		t.Fatalf("want the unknown field, then shutdownGrace: %v", err)
	}
}

func TestPlaceholders(t *testing.T) {
	doc := strings.Replace(valid, testPin, "sha256/REPLACE+with+relays+pin+tunnel+keys+pin+AAA=", 1)
	check(t, doc, "relay.pin", 0, "is a placeholder")
	if _, err := ParseTemplate([]byte(doc)); err != nil {
		t.Fatalf("template: %v", err)
	}
	path := filepath.Join(t.TempDir(), "bunny.yaml")
	if err := os.WriteFile(path, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadOffline(path); err == nil || !strings.Contains(err.Error(), path+":") || !strings.Contains(err.Error(), "placeholder") {
		t.Fatalf("LoadOffline: %v", err)
	}
	if _, err := LoadTemplate(path); err != nil {
		t.Fatalf("LoadTemplate: %v", err)
	}
}

func TestParseSize(t *testing.T) {
	for in, want := range map[string]int64{"1": 1, "1024": 1024, "1KiB": 1024, "1MiB": 1 << 20, "512 KiB": 512 << 10, "2MB": 2 << 20, "10B": 10} {
		if got, err := ParseSize(in); err != nil || got != want {
			t.Errorf("ParseSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "x", "-1", "1.5MiB", "1TiB", "99999999999GiB"} {
		if _, err := ParseSize(in); err == nil {
			t.Errorf("ParseSize(%q) accepted", in)
		}
	}
}

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	relayPin, err := keys.WriteIdentity(filepath.Join(dir, "relay"), "relay", false)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := keys.WriteIdentity(filepath.Join(dir, "bunny"), "bunny", false); err != nil {
		t.Fatal(err)
	}
	cert, key := filepath.Join(dir, "bunny", keys.IdentityCertFile), filepath.Join(dir, "bunny", keys.IdentityKeyFile)
	doc := strings.NewReplacer(
		"pin: "+testPin, "pinFile: "+filepath.Join(dir, "relay", keys.IdentityCertFile),
		"/etc/bunny/identity/identity.crt", cert,
		"/etc/bunny/identity/identity.key", key).Replace(valid)
	path := filepath.Join(dir, "bunny.yaml")
	if err := os.WriteFile(path, []byte(doc), 0o644); err != nil {
		t.Fatal(err)
	}
	c, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if c.Relay.Pin != relayPin {
		t.Errorf("pin from pinFile %s, want %s", c.Relay.Pin, relayPin)
	}

	// A key file others can read is refused, naming the field; the
	// message never holds the key.
	if err := os.Chmod(key, 0o644); err != nil {
		t.Fatal(err)
	}
	_, err = Load(path)
	if err == nil || !strings.Contains(err.Error(), "identity.keyFile") || strings.Contains(err.Error(), "PRIVATE KEY") {
		t.Fatalf("group-readable key: %v", err)
	}
	if err := os.Chmod(key, 0o600); err != nil {
		t.Fatal(err)
	}

	if err := os.Remove(filepath.Join(dir, "relay", keys.IdentityCertFile)); err != nil {
		t.Fatal(err)
	}
	// A missing pin file names the file, the line and relay.pinFile.
	if _, err = Load(path); err == nil || !strings.Contains(err.Error(), path+":3: relay.pinFile") {
		t.Fatalf("missing pin file: %v", err)
	}

	// A parse error names the file and line.
	if err := os.WriteFile(path, []byte(strings.Replace(doc, "concurrency: 4", "concurrency: x", 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err = Load(path); err == nil || !strings.Contains(err.Error(), path+":9: concurrency") {
		t.Fatalf("bad concurrency: %v", err)
	}
	if _, err = Load(filepath.Join(dir, "none.yaml")); err == nil {
		t.Fatal("missing file accepted")
	}
}

// FuzzParse: any input is either a valid configuration or an Errors; it
// never panics, and what parses satisfies the invariants.
func FuzzParse(f *testing.F) {
	f.Add([]byte(valid))
	f.Add([]byte("relay: {address: 'a:1', pinFile: x}\nidentity: {certFile: a, keyFile: b}\nqueues: [{name: q, http: {url: 'http://h/'}}]"))
	f.Add([]byte("queues: [{name: q, exec: {command: [a], maxOutput: 1KiB}}]"))
	f.Add([]byte("admin: {listen: ''}\nconcurrency: 1024"))
	f.Add([]byte("a: &x [1]\nb: *x"))
	f.Add([]byte("- 1\n- 2"))
	f.Add([]byte("relay: !!binary aGVsbG8="))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := Parse(data)
		if err != nil {
			var es Errors
			if !errors.As(err, &es) || len(es) == 0 {
				t.Fatalf("error %v (%T) is not a non-empty Errors", err, err)
			}
			return
		}
		if c.Relay.Address == "" || (c.Relay.PinFile == "" && c.Relay.Pin == (keys.Pin{})) || c.Identity.CertFile == "" ||
			c.Concurrency < 1 || c.Concurrency > MaxConcurrency || len(c.Queues) == 0 {
			t.Fatalf("accepted an incomplete configuration: %+v", c)
		}
		for _, q := range c.Queues {
			if (q.Exec == nil) == (q.HTTP == nil) || q.Name == "" {
				t.Fatalf("queue %+v", q)
			}
			if q.Exec != nil && (len(q.Exec.Command) == 0 || q.Exec.MaxOutput < 1 || q.Exec.MaxOutput > MaxOutputLimit || q.Exec.Timeout <= 0) {
				t.Fatalf("exec %+v", q.Exec)
			}
			if q.HTTP != nil && (q.HTTP.URL == "" || q.HTTP.MaxOutput < 1 || q.HTTP.MaxOutput > MaxOutputLimit || q.HTTP.Timeout <= 0) {
				t.Fatalf("http %+v", q.HTTP)
			}
		}
	})
}
