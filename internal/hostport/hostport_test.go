package hostport

import (
	"net"
	"strconv"
	"strings"
	"testing"
)

func TestCheck(t *testing.T) {
	for _, tc := range []struct {
		in     string
		listen bool
		want   string // "" accepts; else a part of the error
	}{
		{"relay.relay.svc:7000", false, ""},
		{"10.99.0.1:51820", false, ""},
		{"[::1]:9090", false, ""},
		{"  gw.example.com:51820 ", false, ""},
		{"127.0.0.1:65535", false, ""},
		{":7000", true, ""},
		{"127.0.0.1:0", true, ""},
		{"0.0.0.0:9090", true, ""},
		{"", false, "missing port"},
		{"gw.example.com", false, "missing port in address"},
		{"a:b:c", false, "too many colons"},
		{":7000", false, `":7000" has no host`},
		{"127.0.0.1:0", false, `port "0" is not a number from 1 to 65535`},
		{"h:65536", true, `port "65536" is not a number from 0 to 65535`},
		{"h:-1", true, "is not a number from 0 to 65535"},
		{"h:http", false, `port "http"`},
		{"h:", false, `port ""`},
		{"a b:80", false, `"a b" is not a valid host`},
		{"relay/x:80", false, `"relay/x" is not a valid host`},
		{"http://relay:80", false, "too many colons"},
	} {
		err := Check(tc.in, tc.listen)
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("Check(%q, %v): %v", tc.in, tc.listen, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("Check(%q, %v) = %v, want an error with %q", tc.in, tc.listen, err, tc.want)
		}
	}
}

// Whatever Check accepts splits into a host without spaces or '/' and a
// port in range; whatever it refuses, it quotes.
func FuzzCheck(f *testing.F) {
	f.Add("relay.relay.svc:7000", false)
	f.Add(":0", true)
	f.Add("[::1]:65535", false)
	f.Add(" a/b:1", false)
	f.Fuzz(func(t *testing.T, s string, listen bool) {
		err := Check(s, listen)
		if err != nil {
			return
		}
		host, port, serr := net.SplitHostPort(strings.TrimSpace(s))
		if serr != nil {
			t.Fatalf("accepted %q, which does not split: %v", s, serr)
		}
		v, perr := strconv.Atoi(port)
		if perr != nil || v < 0 || v > 65535 || (!listen && (v == 0 || host == "")) || strings.ContainsAny(host, " /") {
			t.Fatalf("accepted %q (listen %v)", s, listen)
		}
	})
}
