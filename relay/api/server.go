package api

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tunnel-dev/tunnel/keys"
)

// ServerOptions configure Start.
type ServerOptions struct {
	// Addr is the listen address ("127.0.0.1:8080"; ":0" picks a port).
	Addr string
	// Identity is relay's TLS identity.
	Identity keys.Identity
	// Handler is the API (NewHandler).
	Handler http.Handler
	Logger  *slog.Logger
	// MaxConns bounds the connections open per producer, and per source
	// address for connections not yet authenticated (DefaultMaxConns when
	// zero; see connLimits).
	MaxConns int
	// Registerer receives the connection metrics; nil registers none.
	Registerer prometheus.Registerer
}

// Server is the API served over HTTPS.
type Server struct {
	ln  net.Listener
	srv *http.Server
	wg  sync.WaitGroup
}

// Start listens on opts.Addr and serves the API over TLS in the
// background.
func Start(ctx context.Context, opts ServerOptions) (*Server, error) {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	limits, err := newConnLimits(opts.MaxConns, opts.Registerer, opts.Logger)
	if err != nil {
		return nil, err
	}
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", opts.Addr)
	if err != nil {
		return nil, fmt.Errorf("starting the producer API on %s: %w", opts.Addr, err)
	}
	s := &Server{
		ln: ln,
		srv: &http.Server{
			Handler:           opts.Handler,
			ConnContext:       connContext,
			TLSConfig:         ServerTLS(opts.Identity),
			ReadHeaderTimeout: 5 * time.Second,
			ReadTimeout:       time.Minute, // a 32 MiB batch over a slow link
			WriteTimeout:      2 * time.Minute,
			IdleTimeout:       2 * time.Minute,
			MaxHeaderBytes:    16 << 10,
			// TLS handshake failures (scanners, clients that do not pin
			// relay) are net/http's own log lines: debug level.
			ErrorLog: log.New(debugWriter{opts.Logger}, "", 0),
		},
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		if err := s.srv.Serve(tls.NewListener(limitedListener{ln, limits}, s.srv.TLSConfig)); err != nil && !errors.Is(err, http.ErrServerClosed) {
			opts.Logger.Error("producer API stopped", "err", err)
		}
	}()
	opts.Logger.Info("producer API listening", "addr", ln.Addr().String(), "pin", opts.Identity.Pin().String())
	return s, nil
}

// Addr is the bound address.
func (s *Server) Addr() net.Addr { return s.ln.Addr() }

// URL is the API's base URL, such as "https://127.0.0.1:8080".
func (s *Server) URL() string { return "https://" + s.ln.Addr().String() }

// Close stops the server, letting calls in flight finish for up to five
// seconds.
func (s *Server) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := s.srv.Shutdown(ctx)
	s.wg.Wait()
	return err
}

type debugWriter struct{ l *slog.Logger }

func (d debugWriter) Write(b []byte) (int, error) {
	d.l.Debug("producer API", "msg", strings.TrimSpace(string(b)))
	return len(b), nil
}
