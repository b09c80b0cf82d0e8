package handler

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// bunny's own http handler gets each payload back from Echo as the
// result; an oversized one fails the job saying why.
func TestEcho(t *testing.T) {
	srv := httptest.NewServer(Echo(16))
	defer srv.Close()
	h := &HTTP{URL: srv.URL + "/run", Timeout: 5 * time.Second, MaxOutput: 1 << 10}
	for _, p := range []string{"hello", "", "\x00binary\xff"} {
		out, err := h.Run(context.Background(), Job{ID: "1", Queue: "q", Attempt: 1, Payload: []byte(p)})
		if err != nil || string(out) != p {
			t.Errorf("payload %q: got %q, %v", p, out, err)
		}
	}
	if _, err := h.Run(context.Background(), Job{Payload: []byte(strings.Repeat("x", 17))}); err == nil || !strings.Contains(err.Error(), "413") || !strings.Contains(err.Error(), "larger than 16 bytes") {
		t.Errorf("oversized payload: %v", err)
	}
	resp, err := http.Get(srv.URL + "/healthz")
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("healthz: %v %v", resp, err)
	}
	resp.Body.Close()
	resp, err = http.Get(srv.URL + "/run")
	if err != nil || resp.StatusCode != http.StatusMethodNotAllowed {
		t.Fatalf("GET /run: %v %v", resp, err)
	}
	resp.Body.Close()
}
