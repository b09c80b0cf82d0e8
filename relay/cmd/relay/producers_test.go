package main

import (
	"context"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tunnel-dev/tunnel/internal/testutil"
	"github.com/tunnel-dev/tunnel/keys"
	"github.com/tunnel-dev/tunnel/relay/api"
	"github.com/tunnel-dev/tunnel/relay/producers"
)

// relay jobs with a client certificate, a token file or $RELAY_TOKEN,
// against relay serve: producer-a (a certificate) is kept to queue a; a
// token made by relay producers token works once its entry is in the
// file and is refused once it is removed, with no restart; credentials
// never show in what the commands print.
func TestJobsCredentials(t *testing.T) {
	s := newSetup(t)
	p := startRelay(t, s, "--producers-check", "50ms")
	pinFlag := "--server-pin=" + s.relayPin.String()
	certFlags := []string{"--client-cert", filepath.Join(s.dir, "producer-a", keys.IdentityCertFile), "--client-key", filepath.Join(s.dir, "producer-a", keys.IdentityKeyFile)}
	jobs := func(args ...string) (int, string, string) {
		t.Helper()
		return runCLI(t, append([]string{"jobs", "--server", p.http}, args...)...)
	}
	asA := func(args ...string) (int, string, string) {
		t.Helper()
		return jobs(append(append([]string{pinFlag}, certFlags...), args...)...)
	}
	if code, out, errOut := asA("submit", "-q", "a", "-p", "x"); code != 0 || !strings.Contains(out, `"queue": "a"`) {
		t.Fatalf("producer-a submits to a: exit %d %s %s", code, out, errOut)
	}
	if code, _, errOut := asA("submit", "-q", "b", "-p", "x"); code != 1 || !strings.Contains(errOut, "producer producer-a may not enqueue jobs of queue b") || !strings.Contains(errOut, "403") {
		t.Fatalf("producer-a submits to b: exit %d %s", code, errOut)
	}
	b, err := p.api(s).Enqueue(context.Background(), api.JobRequest{Queue: "b"})
	if err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{{"get", b.ID}, {"cancel", b.ID}} {
		if code, _, errOut := asA(args...); code != 1 || !strings.Contains(errOut, "404") {
			t.Fatalf("producer-a %v: exit %d %s", args, code, errOut)
		}
	}
	// relay's key is pinned: the server's certificate, or nothing.
	if code, _, errOut := jobs(append([]string{"--server-cert", filepath.Join(s.dir, "stranger", keys.IdentityCertFile)}, append(certFlags, "list")...)...); code != 1 || !strings.Contains(errOut, "not the pinned") {
		t.Fatalf("another relay key: exit %d %s", code, errOut)
	}
	if code, _, errOut := jobs(append(certFlags, "list")...); code != 2 || !strings.Contains(errOut, "--server-pin") {
		t.Fatalf("no relay pin: exit %d %s", code, errOut)
	}
	if code, _, errOut := jobs(pinFlag, "list"); code != 2 || !strings.Contains(errOut, "no credentials") {
		t.Fatalf("no credentials: exit %d %s", code, errOut)
	}

	// A token made by relay producers token, written to a file.
	tokFile := filepath.Join(s.dir, "ci.token")
	code, entry, errOut := runCLI(t, "producers", "token", "ci", "-q", "a", "-a", "enqueue,read", "--out", tokFile)
	if code != 0 {
		t.Fatalf("producers token: exit %d %s", code, errOut)
	}
	tok, err := os.ReadFile(tokFile)
	if err != nil {
		t.Fatal(err)
	}
	token := strings.TrimSpace(string(tok))
	if producers.CheckToken(token) != nil || strings.Contains(entry, token) || !strings.Contains(entry, producers.HashToken(token).String()) {
		t.Fatalf("producers token printed %q for token file %q", entry, tok)
	}
	if fi, err := os.Stat(tokFile); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("token file %v %v", fi, err)
	}
	if code, _, errOut := runCLI(t, "producers", "token", "ci", "--out", tokFile); code != 2 || !strings.Contains(errOut, "new file") {
		t.Fatalf("--out over an existing file: exit %d %s", code, errOut)
	}
	withToken := func(args ...string) (int, string, string) {
		t.Helper()
		return jobs(append([]string{pinFlag, "--token-file", tokFile}, args...)...)
	}
	if code, _, errOut := withToken("list", "-q", "a"); code != 1 || !strings.Contains(errOut, "401") || strings.Contains(errOut, token) {
		t.Fatalf("a token not yet in the file: exit %d %s", code, errOut)
	}
	body, err := os.ReadFile(filepath.Join(s.dir, "producers.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(s.dir, "producers.yaml"), append(body, entry...), 0o644); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 10*time.Second, "the new token accepted", func() bool {
		code, _, _ := withToken("list", "-q", "a")
		return code == 0
	})
	if code, out, _ := withToken("submit", "-q", "a", "-p", "by token"); code != 0 || !strings.Contains(out, `"queue": "a"`) {
		t.Fatalf("submit by token: exit %d %s", code, out)
	}
	t.Setenv("RELAY_TOKEN", token)
	if code, _, errOut := jobs(pinFlag, "list", "-q", "a"); code != 0 {
		t.Fatalf("$RELAY_TOKEN: exit %d %s", code, errOut)
	}
	if code, _, errOut := withToken("list"); code != 2 || !strings.Contains(errOut, "both --token-file and $RELAY_TOKEN") {
		t.Fatalf("two tokens: exit %d %s", code, errOut)
	}
	t.Setenv("RELAY_TOKEN", "")
	// Revoked by editing the file: refused without a restart.
	if err := os.WriteFile(filepath.Join(s.dir, "producers.yaml"), body, 0o644); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 10*time.Second, "the removed token refused", func() bool {
		code, _, _ := withToken("list", "-q", "a")
		return code == 1
	})
	if err := os.Chmod(tokFile, 0o644); err != nil {
		t.Fatal(err)
	}
	if code, _, errOut := withToken("list"); code != 2 || !strings.Contains(errOut, "--token-file") || !strings.Contains(errOut, "chmod 600") {
		t.Fatalf("a token file others can read: exit %d %s", code, errOut)
	}
	if strings.Contains(p.log(), token) || strings.Contains(p.log(), s.token) {
		t.Fatal("a token is in relay's log")
	}
	if !strings.Contains(p.log(), `"reason":"unknown_token"`) {
		t.Fatalf("the refused token is not logged:\n%s", p.log())
	}
}

// The API's port serves no metrics or probes; the admin port serves no
// API and answers plain HTTP.
func TestAdminAndAPIApart(t *testing.T) {
	s := newSetup(t)
	p := startRelay(t, s)
	for _, path := range []string{"/healthz", "/readyz", "/metrics"} {
		resp, err := http.Get(p.admin + path)
		if err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("admin %s: %v %v", path, resp, err)
		}
		resp.Body.Close()
	}
	resp, err := http.Get(p.admin + "/v1/jobs")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Fatalf("the admin port serves the API: %d", resp.StatusCode)
	}
	hc := api.HTTPClient(api.ClientTLS(s.relayPin, nil), 5*time.Second)
	req, _ := http.NewRequest(http.MethodGet, p.http+"/metrics", nil)
	req.Header.Set("Authorization", "Bearer "+s.token)
	resp, err = hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Fatalf("the API port serves /metrics: %d", resp.StatusCode)
	}
	// Plain HTTP to the API port gets Go's TLS server's 400, never the API.
	if resp, err := http.Get(strings.Replace(p.http, "https://", "http://", 1) + "/v1/jobs"); err == nil {
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest {
			t.Fatalf("plain HTTP to the API: %d", resp.StatusCode)
		}
	}
}

// relay producers token prints the token once and an entry holding only
// its hash; relay producers check reads the file as serve does.
func TestProducersCommands(t *testing.T) {
	code, out, errOut := runCLI(t, "producers", "token", "ci", "-q", "a", "-q", "*", "-a", "read")
	if code != 0 {
		t.Fatalf("exit %d %s", code, errOut)
	}
	var token string
	for _, l := range strings.Split(out, "\n") {
		if strings.HasPrefix(l, producers.TokenPrefix) {
			token = l
		}
	}
	if producers.CheckToken(token) != nil || strings.Count(out, token) != 1 || !strings.Contains(out, producers.HashToken(token).String()) {
		t.Fatalf("printed %q", out)
	}
	file := filepath.Join(t.TempDir(), "producers.yaml")
	entry := out[strings.Index(out, "  - name: ci"):]
	if err := os.WriteFile(file, []byte("producers:\n"+entry), 0o600); err != nil {
		t.Fatal(err)
	}
	if code, out, errOut := runCLI(t, "producers", "check", file); code != 0 || !strings.Contains(out, "ci\t0 pins, 1 tokens\t*: read; a: read") || !strings.Contains(out, "1 producers") {
		t.Fatalf("check: exit %d %q %s", code, out, errOut)
	}
	if err := os.WriteFile(file, []byte("producers:\n  - name: ci\n    tokens: ["+token+"]\n    queues: {a: [read]}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if code, _, errOut := runCLI(t, "producers", "check", file); code != 2 || !strings.Contains(errOut, file+":3: producers[0].tokens[0]: this is a token") || strings.Contains(errOut, token) {
		t.Fatalf("check of a file holding a token: exit %d %s", code, errOut)
	}
	// A directory is checked as serve reads it: one configuration, a
	// credential in two files refused naming both.
	dir := t.TempDir()
	for _, name := range []string{"a.yaml", "b.yaml"} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte("producers:\n"+entry), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if code, _, errOut := runCLI(t, "producers", "check", dir); code != 2 || !strings.Contains(errOut, filepath.Join(dir, "b.yaml")+":2: producers[0].name") || !strings.Contains(errOut, filepath.Join(dir, "a.yaml")) {
		t.Fatalf("check of a directory naming a producer twice: exit %d %s", code, errOut)
	}
	if err := os.Remove(filepath.Join(dir, "b.yaml")); err != nil {
		t.Fatal(err)
	}
	if code, out, errOut := runCLI(t, "producers", "check", dir); code != 0 || !strings.Contains(out, dir+": 1 producers") {
		t.Fatalf("check of a directory: exit %d %q %s", code, out, errOut)
	}
	for _, args := range [][]string{{"producers", "token", "a b"}, {"producers", "token", "ci", "-q", "b c"}, {"producers", "token", "ci", "-a", "lease"}} {
		if code, _, _ := runCLI(t, args...); code != 2 {
			t.Errorf("%v: exit %d", args, code)
		}
	}
}
