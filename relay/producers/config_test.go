package producers

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tunnel-dev/tunnel/internal/kubelet"
	"github.com/tunnel-dev/tunnel/internal/testutil"
	"github.com/tunnel-dev/tunnel/keys"
)

func pin(t testing.TB, name string) keys.Pin {
	t.Helper()
	return testutil.Identity(t, name).Pin()
}

func token(t testing.TB) (string, TokenHash) {
	t.Helper()
	tok, h, err := NewToken()
	if err != nil {
		t.Fatal(err)
	}
	return tok, h
}

func TestParse(t *testing.T) {
	p1 := pin(t, "a")
	tok, h := token(t)
	c, err := Parse([]byte(fmt.Sprintf(`
producers:
  - name: billing
    pins: [%s]
    tokens: [%s]
    queues:
      a: [enqueue, read]
      "*": [read]
  - name: ops
    tokens: []
    pins: [%s]
    queues: {b: [cancel, retry]}
`, p1, h, pin(t, "b"))))
	if err != nil {
		t.Fatal(err)
	}
	byPin, ok := c.LookupPin(p1)
	if !ok || byPin.Name != "billing" {
		t.Fatalf("LookupPin = %v %v", byPin, ok)
	}
	byTok, ok := c.LookupToken(tok)
	if !ok || byTok != byPin {
		t.Fatalf("LookupToken = %v %v", byTok, ok)
	}
	other, _ := token(t)
	if _, ok := c.LookupToken(other); ok {
		t.Fatal("an unknown token was found")
	}
	if _, ok := c.LookupToken(h.String()); ok {
		t.Fatal("the hash itself was taken as the token")
	}
	tests := []struct {
		queue string
		a     Action
		ok    bool
	}{
		{"a", Enqueue, true}, {"a", Read, true}, {"b", Read, true}, {"b", Enqueue, false}, {"a", Cancel, false},
	}
	for _, tt := range tests {
		if got := byPin.May(tt.queue, tt.a); got != tt.ok {
			t.Errorf("May(%s, %s) = %v", tt.queue, tt.a, got)
		}
	}
	var nilP *Producer
	if nilP.May("a", Read) {
		t.Error("a nil producer may read")
	}
	if c, err := Parse([]byte("producers: []\n")); err != nil || len(c.Producers) != 0 {
		t.Fatalf("an empty list (everything refused): %v %v", c, err)
	}
}

func TestParseErrors(t *testing.T) {
	p1 := pin(t, "a")
	tok, h := token(t)
	tests := []struct {
		name, yaml, want string
	}{
		{"empty", ``, "empty"},
		{"unknown top field", "producer: []", `1: producer: unknown field`},
		{"unknown producer field", fmt.Sprintf("producers:\n  - name: b\n    pin: [%s]\n", p1), `3: producers[0].pin: unknown field`},
		{"no name", fmt.Sprintf("producers:\n  - pins: [%s]\n    queues: {q: [read]}\n", p1), "producers[0].name: producer name is empty"},
		{"bad name", fmt.Sprintf("producers:\n  - name: a b\n    pins: [%s]\n    queues: {q: [read]}\n", p1), "2: producers[0].name:"},
		{"no credentials", "producers:\n  - name: b\n    queues: {q: [read]}\n", "producers[0]: no pins and no tokens"},
		{"bad pin", "producers:\n  - name: b\n    pins: [sha256/nope]\n    queues: {q: [read]}\n", "3: producers[0].pins[0]: parsing pin"},
		{"bad hash", "producers:\n  - name: b\n    tokens: [sha256:abc]\n    queues: {q: [read]}\n", "3: producers[0].tokens[0]: token hash"},
		{"a token, not its hash", fmt.Sprintf("producers:\n  - name: b\n    tokens: [%s]\n    queues: {q: [read]}\n", tok), "this is a token, not its hash"},
		{"hash twice", fmt.Sprintf("producers:\n  - name: b\n    tokens: [%s, %s]\n    queues: {q: [read]}\n", h, h), "tokens[1]: " + h.String() + " is also producer b's"},
		{"pin in two producers", fmt.Sprintf("producers:\n  - {name: a, pins: [%s], queues: {q: [read]}}\n  - {name: b, pins: [%s], queues: {q: [read]}}\n", p1, p1), "3: producers[1].pins[0]: " + p1.String() + " is also producer a's"},
		{"same name twice", fmt.Sprintf("producers:\n  - {name: a, pins: [%s], queues: {q: [read]}}\n  - {name: a, tokens: [%s], queues: {q: [read]}}\n", p1, h), `producers[1].name: "a" is also the name of producers[0]`},
		{"no queues", fmt.Sprintf("producers:\n  - name: b\n    pins: [%s]\n", p1), "producers[0].queues: missing"},
		{"bad action", fmt.Sprintf("producers:\n  - name: b\n    pins: [%s]\n    queues:\n      q: [read, lease]\n", p1), `5: producers[0].queues.q[1]: unknown action "lease"`},
		{"action twice", fmt.Sprintf("producers:\n  - name: b\n    pins: [%s]\n    queues:\n      q: [read, read]\n", p1), `producers[0].queues.q[1]: read is listed twice`},
		{"no actions", fmt.Sprintf("producers:\n  - name: b\n    pins: [%s]\n    queues: {q: []}\n", p1), "producers[0].queues.q: no actions"},
		{"bad queue", fmt.Sprintf("producers:\n  - name: b\n    pins: [%s]\n    queues: {'a b': [read]}\n", p1), "queue name"},
		{"duplicate key", "producers: []\nproducers: []\n", "producers: appears twice"},
		{"not a list", "producers: 3\n", "producers: want a list"},
		{"too large", "producers: []\n#" + strings.Repeat("x", MaxFileSize), "at most"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse([]byte(tt.yaml))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want one mentioning %q", err, tt.want)
			}
			if strings.Contains(err.Error(), tok) {
				t.Fatal("the error repeats the token")
			}
		})
	}
}

func TestTokens(t *testing.T) {
	tok, h := token(t)
	if err := CheckToken(tok); err != nil {
		t.Fatal(err)
	}
	if HashToken(tok) != h {
		t.Fatal("the hash NewToken gave is not HashToken's")
	}
	back, err := ParseTokenHash(h.String())
	if err != nil || back != h {
		t.Fatalf("ParseTokenHash(%s) = %v %v", h, back, err)
	}
	tok2, _ := token(t)
	if tok2 == tok {
		t.Fatal("two tokens alike")
	}
	for _, bad := range []string{"", "relaytok_", "relaytok_" + strings.Repeat("A", 42), "Bearer " + tok, tok + "x", strings.ToUpper(tok)} {
		err := CheckToken(bad)
		if err == nil {
			t.Errorf("CheckToken(%q) passed", bad)
		} else if len(bad) > 12 && strings.Contains(err.Error(), bad) {
			t.Errorf("the error repeats the token: %v", err)
		}
	}
}

func TestEntryParses(t *testing.T) {
	_, h := token(t)
	e := Entry("demo", []keys.Pin{pin(t, "x")}, []TokenHash{h}, map[string][]Action{"a": {Enqueue, Read}, AnyQueue: {Read}})
	c, err := Parse([]byte("producers:\n" + e))
	if err != nil {
		t.Fatalf("%v\n%s", err, e)
	}
	p := c.Producers[0]
	if p.Name != "demo" || !p.May("a", Enqueue) || !p.May("z", Read) || p.May("z", Enqueue) || len(p.Tokens) != 1 || len(p.Pins) != 1 {
		t.Fatalf("entry parsed as %+v", p)
	}
}

// The watcher follows a changed file (a revoked token goes at once),
// keeps the running configuration when the new one is bad, and follows
// kubelet's ..data symlink swap.
func TestWatcherReloads(t *testing.T) {
	vol := &kubelet.Volume{Dir: t.TempDir()}
	tok1, h1 := token(t)
	tok2, h2 := token(t)
	publish := func(body string) { vol.Publish(t, map[string][]byte{"producers.yaml": []byte(body)}) }
	publish("producers:\n" + Entry("a", nil, []TokenHash{h1, h2}, map[string][]Action{"q": {Read}}))
	path := filepath.Join(vol.Dir, "producers.yaml")
	ctx, cancel := context.WithCancel(context.Background())
	w, err := Watch(ctx, WatchOptions{Path: path, Every: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cancel(); <-w.Done() })
	if _, ok := w.Config().LookupToken(tok1); !ok {
		t.Fatal("token 1 not loaded")
	}
	waitFor := func(what string, cond func() bool) {
		t.Helper()
		testutil.Eventually(t, 5*time.Second, what, func() bool {
			if cond() {
				return true
			}
			w.Check()
			return false
		})
	}
	publish("producers:\n  - {name: a, tokens: [sha256:garbage], queues: {q: [read]}}\n")
	w.Check()
	time.Sleep(100 * time.Millisecond)
	if _, ok := w.Config().LookupToken(tok1); !ok {
		t.Fatal("a bad file replaced the running configuration")
	}
	publish("producers:\n" + Entry("a", nil, []TokenHash{h2}, map[string][]Action{"q": {Read}}))
	waitFor("token 1 revoked", func() bool { _, ok := w.Config().LookupToken(tok1); return !ok })
	if _, ok := w.Config().LookupToken(tok2); !ok {
		t.Fatal("token 2 went too")
	}
	if _, err := Watch(ctx, WatchOptions{Path: filepath.Join(vol.Dir, "missing.yaml")}); err == nil {
		t.Fatal("a missing file was watched")
	}
}

func FuzzParse(f *testing.F) {
	p := pin(f, "seed")
	_, h := token(f)
	f.Add([]byte("producers:\n" + Entry("demo", []keys.Pin{p}, []TokenHash{h}, map[string][]Action{"q": {Enqueue, Read}, AnyQueue: {Read}})))
	f.Add([]byte("producers:\n  - {name: a, tokens: [" + h.String() + "], queues: {'*': [read]}}\n"))
	f.Add([]byte("producers: [{name: &a x, pins: *a}]"))
	f.Add([]byte("producers: []"))
	f.Add([]byte("{"))
	f.Fuzz(func(t *testing.T, in []byte) {
		c, err := Parse(in)
		if err != nil {
			return
		}
		for _, pr := range c.Producers {
			if len(pr.Pins)+len(pr.Tokens) == 0 || len(pr.Queues) == 0 {
				t.Fatalf("producer %q without credentials or queues", pr.Name)
			}
			for _, p := range pr.Pins {
				if got, ok := c.LookupPin(p); !ok || got != pr {
					t.Fatalf("pin %s does not lead back to %s", p, pr.Name)
				}
			}
			for q, as := range pr.Queues {
				for _, a := range as {
					if !pr.May(q, a) {
						t.Fatalf("%s may not %s on %s, which it lists", pr.Name, a, q)
					}
				}
			}
		}
	})
}

// FuzzToken: no string but a well-formed token passes CheckToken, and
// none finds a producer unless its hash is listed.
func FuzzToken(f *testing.F) {
	tok, h := token(f)
	c, err := Parse([]byte("producers:\n" + Entry("a", nil, []TokenHash{h}, map[string][]Action{"q": {Read}})))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(tok)
	f.Add(h.String())
	f.Add("relaytok_")
	f.Add("")
	f.Fuzz(func(t *testing.T, s string) {
		if _, ok := c.LookupToken(s); ok != (s == tok) {
			t.Fatalf("LookupToken(%q) = %v", s, ok)
		}
		if CheckToken(s) == nil && !strings.HasPrefix(s, TokenPrefix) {
			t.Fatalf("CheckToken passed %q", s)
		}
		if _, err := ParseTokenHash(s); err == nil && s != strings.TrimSpace(s) && !strings.HasPrefix(strings.TrimSpace(s), "sha256:") {
			t.Fatalf("ParseTokenHash passed %q", s)
		}
	})
}

func TestNewFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "producers.yaml")
	tok, err := NewFile(path, "demo", "a", "b")
	if err != nil {
		t.Fatal(err)
	}
	c, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	p, ok := c.LookupToken(tok)
	if !ok || p.Name != "demo" || !p.May("b", Retry) || p.May("c", Read) {
		t.Fatalf("NewFile's producer: %+v %v", p, ok)
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("mode: %v %v", fi, err)
	}
	if _, err := NewFile(path, "demo", "a"); err == nil {
		t.Fatal("NewFile replaced a file")
	}
	if _, err := NewFile(filepath.Join(t.TempDir(), "p.yaml"), "demo", "bad queue"); err == nil {
		t.Fatal("NewFile wrote a bad queue")
	}
}
