package store_test

import (
	"strings"
	"testing"

	"github.com/tunnel-dev/tunnel/keys/store"
)

func TestParseAddress(t *testing.T) {
	good := []struct {
		in   string
		want store.Address
	}{
		{"dir:/etc/tunnel/keys", store.Address{Kind: "dir", Path: "/etc/tunnel/keys"}},
		{"dir:keys/", store.Address{Kind: "dir", Path: "keys"}},
		{"secret:tunnel/tunnel-keys", store.Address{Kind: "secret", Namespace: "tunnel", Name: "tunnel-keys"}},
		{"secret:aks-prod/tunnel/tunnel-keys", store.Address{Kind: "secret", Context: "aks-prod", Namespace: "tunnel", Name: "tunnel-keys"}},
		{"secret:arn:aws:eks:eu-west-1:123456789012:cluster/relay/tunnel/tunnel-keys",
			store.Address{Kind: "secret", Context: "arn:aws:eks:eu-west-1:123456789012:cluster/relay", Namespace: "tunnel", Name: "tunnel-keys"}},
		{"secret:ns/keys.v2", store.Address{Kind: "secret", Namespace: "ns", Name: "keys.v2"}},
	}
	for _, g := range good {
		got, err := store.ParseAddress(g.in)
		if err != nil || got != g.want {
			t.Errorf("%q: %+v %v, want %+v", g.in, got, err, g.want)
			continue
		}
		if again, err := store.ParseAddress(got.String()); err != nil || again != got {
			t.Errorf("%q does not round-trip: %q %+v %v", g.in, got.String(), again, err)
		}
	}
	bad := []struct{ in, want string }{
		{"", "no kind"},
		{"/etc/tunnel/keys", "no kind"},
		{"file:/x", "unknown kind"},
		{"dir:", "empty path"},
		{"secret:", "want dir:PATH or secret:"},
		{"secret:name", "want dir:PATH or secret:"},
		{"secret:Tunnel/keys", "not a namespace"},
		{"secret:tunnel/Keys", "not a Secret name"},
		{"secret:tunnel/", "not a Secret name"},
		{"secret:/tunnel/keys", "context"},
		{"secret:my context/tunnel/keys", "context"},
	}
	for _, b := range bad {
		if _, err := store.ParseAddress(b.in); err == nil || !strings.Contains(err.Error(), b.want) {
			t.Errorf("%q: %v, want an error with %q", b.in, err, b.want)
		}
	}
}

func FuzzParseAddress(f *testing.F) {
	for _, s := range []string{"dir:/etc/tunnel/keys", "secret:ns/name", "secret:a/b/ns/name", "secret:arn:aws:eks:x:1:cluster/c/ns/n", "dir:", "secret:/", "x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		a, err := store.ParseAddress(s)
		if err != nil {
			return
		}
		again, err := store.ParseAddress(a.String())
		if err != nil || again != a {
			t.Fatalf("%q parsed to %+v, whose String %q parses to %+v (%v)", s, a, a.String(), again, err)
		}
		if a.Kind == store.KindSecret && (!store.ValidNamespace(a.Namespace) || !store.ValidObjectName(a.Name)) {
			t.Fatalf("%q: accepted %+v", s, a)
		}
	})
}
