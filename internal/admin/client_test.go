package admin

import (
	"context"
	"errors"
	"net"
	"net/http"
	"strings"
	"testing"
)

func TestURL(t *testing.T) {
	for listen, want := range map[string]string{
		"127.0.0.1:9090":         "http://127.0.0.1:9090",
		"0.0.0.0:9090":           "http://127.0.0.1:9090",
		"[::]:9090":              "http://[::1]:9090",
		":9090":                  "http://127.0.0.1:9090",
		"10.0.0.5:9091":          "http://10.0.0.5:9091",
		"http://127.0.0.1:9090/": "http://127.0.0.1:9090",
	} {
		if got := URL(listen); got != want {
			t.Errorf("URL(%q) = %q, want %q", listen, got, want)
		}
	}
}

// Get against a real server: JSON decoded, an error status with its
// body, and nothing listening named as such.
func TestGet(t *testing.T) {
	s, err := Start(context.Background(), Options{Addr: "127.0.0.1:0", Handlers: map[string]http.Handler{
		"/status": JSON(func() any { return map[string]int{"n": 7} }),
		"/broken": JSONFunc(func(context.Context) (any, error) { return nil, errors.New("store down") }),
	}})
	if err != nil {
		t.Fatal(err)
	}
	var v struct{ N int }
	if err := Get(context.Background(), s.URL(), "/status", &v); err != nil || v.N != 7 {
		t.Fatalf("Get /status: %+v %v", v, err)
	}
	if err := Get(context.Background(), s.URL(), "/broken", &v); err == nil || !strings.Contains(err.Error(), "500 Internal Server Error: store down") {
		t.Fatalf("Get /broken: %v", err)
	}
	addr := s.Addr().String()
	_ = s.Close()
	if _, err := net.Dial("tcp", addr); err == nil {
		t.Skip("the port was taken again")
	}
	if err := Get(context.Background(), "http://"+addr, "/status", &v); !errors.Is(err, ErrNothingListening) {
		t.Fatalf("Get of a closed port: %v", err)
	}
}
