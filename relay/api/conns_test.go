package api

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tunnel-dev/tunnel/internal/testutil"
	"github.com/tunnel-dev/tunnel/relay/producers"
	"github.com/tunnel-dev/tunnel/relay/queue"
)

// boundedServer serves e's API on a second listener bounded to max
// connections, with its own metrics.
func boundedServer(t *testing.T, e *env, max int) (*Server, *prometheus.Registry) {
	t.Helper()
	reg := prometheus.NewRegistry()
	srv, err := Start(context.Background(), ServerOptions{Addr: "127.0.0.1:0", Identity: e.relay, Handler: e.h, MaxConns: max, Registerer: reg, Logger: e.logs.Logger()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Close() })
	return srv, reg
}

// counter reads a series of a counter or gauge vector by its one label.
func counter(t *testing.T, reg *prometheus.Registry, name, label string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.Metric {
			if m.Label[0].GetValue() == label {
				if m.Counter != nil {
					return m.Counter.GetValue()
				}
				return m.Gauge.GetValue()
			}
		}
	}
	t.Fatalf("no %s{%q}", name, label)
	return 0
}

// Over real TLS, on HTTP/2 and HTTP/1.1: a producer whose connections
// are all busy gets 429 on one more, and that connection is closed;
// another producer is not affected; once they are idle, a new connection
// closes the longest-idle one instead, so a client that opens a
// connection per call keeps working within the bound.
func TestConnectionsPerProducerBounded(t *testing.T) {
	otherTok, otherHash, err := producers.NewToken()
	if err != nil {
		t.Fatal(err)
	}
	e := newEnv(t, queue.Options{}, producers.Entry("other", nil, []producers.TokenHash{otherHash}, map[string][]producers.Action{"q": {producers.Read}}))
	for _, proto := range []string{"h2", "http/1.1"} {
		t.Run(proto, func(t *testing.T) {
			const max = 2
			srv, reg := boundedServer(t, e, max)
			// Each client has its own transport, so its own connection.
			transport := func() *http.Transport {
				cfg := ClientTLS(e.relay.Pin(), nil)
				cfg.NextProtos = []string{proto}
				tr := &http.Transport{TLSClientConfig: cfg, ForceAttemptHTTP2: proto == "h2", MaxIdleConnsPerHost: 1}
				t.Cleanup(tr.CloseIdleConnections)
				return tr
			}
			client := func(token string) *Client {
				return &Client{BaseURL: srv.URL(), HTTP: &http.Client{Transport: transport(), Timeout: 10 * time.Second}, Token: token}
			}
			ctx := context.Background()
			// Two enqueues whose bodies are still being sent: two busy
			// connections.
			type busy struct {
				body *io.PipeWriter
				resp chan *http.Response
			}
			var held []busy
			for range max {
				pr, pw := io.Pipe()
				req, err := http.NewRequest(http.MethodPost, srv.URL()+"/v1/jobs", pr)
				if err != nil {
					t.Fatal(err)
				}
				req.Header.Set("Authorization", "Bearer "+e.token)
				req.Header.Set("Content-Type", "application/json")
				b := busy{pw, make(chan *http.Response, 1)}
				tr := transport()
				go func() {
					resp, err := tr.RoundTrip(req)
					if err != nil {
						t.Error(err)
					}
					b.resp <- resp
				}()
				if _, err := pw.Write([]byte(`{"queue": "q", `)); err != nil {
					t.Fatal(err)
				}
				held = append(held, b)
			}
			testutil.Eventually(t, 5*time.Second, "two busy connections", func() bool {
				return counter(t, reg, "relay_producer_conns", "authenticated") == max
			})
			extra := client(e.token)
			_, err := extra.Queues(ctx)
			var ae *Error
			if !errors.As(err, &ae) || ae.Status != http.StatusTooManyRequests || ae.Code != "too_many_connections" {
				t.Fatalf("a third connection of one producer, two busy: %v, want 429 too_many_connections", err)
			}
			if n := counter(t, reg, "relay_producer_conns_refused_total", connsPerProducer); n != 1 {
				t.Fatalf("refused{producer} = %v, want 1", n)
			}
			if _, err := client(otherTok).Queues(ctx); err != nil {
				t.Fatalf("another producer was refused too: %v", err)
			}
			// The refused connection was closed.
			testutil.Eventually(t, 5*time.Second, "the refused connection closed", func() bool {
				return counter(t, reg, "relay_producer_conns", "authenticated") == max+1 &&
					counter(t, reg, "relay_producer_conns", "unauthenticated") == 0
			})
			for _, b := range held {
				if _, err := b.body.Write([]byte(`"payload_text": "x"}`)); err != nil {
					t.Fatal(err)
				}
				b.body.Close()
				if resp := <-b.resp; resp == nil || resp.StatusCode != http.StatusCreated {
					t.Fatalf("a busy connection's enqueue: %v", resp)
				}
			}
			// Both idle now: a new connection closes the longest-idle one.
			if _, err := extra.Queues(ctx); err != nil {
				t.Fatalf("a third connection with two idle: %v", err)
			}
			if n := counter(t, reg, "relay_producer_conns_refused_total", connsIdleClosed); n != 1 {
				t.Fatalf("refused{idle} = %v, want 1", n)
			}
			testutil.Eventually(t, 5*time.Second, "the producer back at its bound", func() bool {
				return counter(t, reg, "relay_producer_conns", "authenticated") == max+1
			})
			if !e.logs.Contains("refused a producer API connection") || !e.logs.Contains("reason=producer") {
				t.Fatalf("the refusal was not logged:\n%s", e.logs.String())
			}
		})
	}
}

// Connections that have not authenticated are bounded per source
// address: past the bound a new one is closed before TLS, and counted;
// authenticated connections no longer count against the address.
func TestConnectionsPerAddressBounded(t *testing.T) {
	e := newEnv(t, queue.Options{})
	const max = 2
	srv, reg := boundedServer(t, e, max)
	addr := srv.Addr().String()
	// Two authenticated connections, kept open.
	var authed []*Client
	for range max {
		c := &Client{BaseURL: srv.URL(), HTTP: HTTPClient(ClientTLS(e.relay.Pin(), nil), 10*time.Second), Token: e.token}
		t.Cleanup(c.HTTP.CloseIdleConnections)
		if _, err := c.Queues(context.Background()); err != nil {
			t.Fatal(err)
		}
		authed = append(authed, c)
	}
	// Two connections that say nothing: admitted, the address's bound.
	var idle []net.Conn
	for range max {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		idle = append(idle, c)
	}
	testutil.Eventually(t, 5*time.Second, "two unauthenticated connections", func() bool {
		return counter(t, reg, "relay_producer_conns", "unauthenticated") == max
	})
	// One more is closed before TLS: its handshake fails on a closed
	// connection, and nothing was read from it.
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.SetDeadline(time.Now().Add(5 * time.Second)); err != nil {
		t.Fatal(err)
	}
	if err := tls.Client(c, ClientTLS(e.relay.Pin(), nil)).Handshake(); err == nil {
		t.Fatal("a connection past the address's bound completed TLS")
	} else if ne, ok := err.(net.Error); ok && ne.Timeout() {
		t.Fatalf("the connection was left open, not closed: %v", err)
	}
	if _, err := c.Read(make([]byte, 1)); !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) {
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			t.Fatal("the refused connection is still open")
		}
	}
	if n := counter(t, reg, "relay_producer_conns_refused_total", connsPerAddress); n != 1 {
		t.Fatalf("refused{address} = %v, want 1", n)
	}
	// The authenticated ones still work, and closing a silent one lets a
	// new connection in.
	if _, err := authed[0].Queues(context.Background()); err != nil {
		t.Fatalf("an authenticated connection stopped working: %v", err)
	}
	idle[0].Close()
	testutil.Eventually(t, 5*time.Second, "a TLS handshake after a silent connection closed", func() bool {
		d := &tls.Dialer{NetDialer: &net.Dialer{Timeout: 2 * time.Second}, Config: ClientTLS(e.relay.Pin(), nil)}
		c, err := d.DialContext(context.Background(), "tcp", addr)
		if err != nil {
			return false
		}
		c.Close()
		return true
	})
}
