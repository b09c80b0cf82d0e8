package rotate_test

import (
	"strings"
	"testing"

	"github.com/tunnel-dev/tunnel/keys/rotate"
)

func TestParseStatusURL(t *testing.T) {
	for _, good := range []string{"http://127.0.0.1:9090", "https://gw.example:443/base/", "http://[::1]:9090"} {
		if _, err := rotate.ParseStatusURL(good); err != nil {
			t.Errorf("%q: %v", good, err)
		}
	}
	for _, bad := range []string{"", "127.0.0.1:9090", "ftp://x", "http://", "http://u:p@h", "http://h/?q=1", "http://h/#f", "http://%zz"} {
		if _, err := rotate.ParseStatusURL(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func FuzzDecodeStatus(f *testing.F) {
	f.Add(`{"public_key":"` + strings.Repeat("A", 43) + `=","peers":[]}`)
	f.Add(`{"public_key":"uC4nGzGm4sX6XrVbz5Ez4u0SXUC5EGkCbqEKkJFI3Bk=","peers":[{"public_key":"x"}]}`)
	f.Add(`[]`)
	f.Fuzz(func(t *testing.T, s string) {
		st, err := rotate.DecodeStatus(strings.NewReader(s))
		if err == nil && st.PublicKey == "" {
			t.Fatal("accepted a status without a key")
		}
	})
}

func FuzzParseStatusURL(f *testing.F) {
	f.Add("http://127.0.0.1:9090")
	f.Add("https://h/x")
	f.Fuzz(func(t *testing.T, s string) {
		u, err := rotate.ParseStatusURL(s)
		if err == nil && (u.Host == "" || u.Scheme != "http" && u.Scheme != "https") {
			t.Fatalf("accepted %q", s)
		}
	})
}
