package admin

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestServer(t *testing.T) {
	reg := NewRegistry()
	c := prometheus.NewCounter(prometheus.CounterOpts{Name: "test_things_total", Help: "Things."})
	reg.MustRegister(c)
	c.Add(3)
	var notReady atomic.Bool
	notReady.Store(true)
	s, err := Start(context.Background(), Options{
		Addr:     "127.0.0.1:0",
		Registry: reg,
		Ready: func() error {
			if notReady.Load() {
				return errors.New("warming up")
			}
			return nil
		},
		Handlers: map[string]http.Handler{"/status": JSON(func() any { return map[string]int{"flows": 2} })},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if code, body := get(t, s.URL()+"/healthz"); code != 200 || body != "ok\n" {
		t.Errorf("healthz: %d %q", code, body)
	}
	if code, body := get(t, s.URL()+"/readyz"); code != 503 || !strings.Contains(body, "warming up") {
		t.Errorf("readyz while not ready: %d %q", code, body)
	}
	notReady.Store(false)
	if code, _ := get(t, s.URL()+"/readyz"); code != 200 {
		t.Errorf("readyz when ready: %d", code)
	}
	if _, body := get(t, s.URL()+"/metrics"); !strings.Contains(body, "test_things_total 3") || !strings.Contains(body, "go_goroutines") {
		t.Errorf("metrics lack the counter or Go metrics:\n%.500s", body)
	}
	if _, body := get(t, s.URL()+"/status"); !strings.Contains(body, `"flows": 2`) {
		t.Errorf("status: %q", body)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := http.Get(s.URL() + "/healthz"); err == nil {
		t.Error("still serving after Close")
	}
}

func TestDisabled(t *testing.T) {
	s, err := Start(context.Background(), Options{})
	if err != nil || s != nil {
		t.Fatalf("empty Addr: %v, %v", s, err)
	}
	if s.URL() != "" || s.Close() != nil {
		t.Fatal("nil server misbehaves")
	}
	if _, err := Start(context.Background(), Options{Addr: "256.0.0.1:1"}); err == nil {
		t.Fatal("bad address accepted")
	}
}
