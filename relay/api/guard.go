package api

import (
	"context"
	"fmt"
	"log/slog"
	"mime"
	"net/http"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tunnel-dev/tunnel/internal/ratelog"
	"github.com/tunnel-dev/tunnel/relay/producers"
	"github.com/tunnel-dev/tunnel/relay/proto"
)

// Refusal reasons, the values of relay_producer_auth_failures_total's
// reason label.
const (
	reasonNoCredentials   = "no_credentials"   // neither a client certificate nor a token
	reasonBadToken        = "bad_token"        // an Authorization header that is not a relay token
	reasonUnknownToken    = "unknown_token"    // a token whose hash no producer lists
	reasonUnknownIdentity = "unknown_identity" // a client certificate no producer pins
	reasonForbidden       = "forbidden"        // a known producer outside its queues or actions
	reasonCrossOrigin     = "cross_origin"     // a request a browser sent for a web page
	reasonContentType     = "content_type"     // a body that is not application/json
)

func reasons() []string {
	return []string{reasonNoCredentials, reasonBadToken, reasonUnknownToken, reasonUnknownIdentity, reasonForbidden, reasonCrossOrigin, reasonContentType}
}

// refusalLogEvery bounds the refusal log: per reason, one line per
// interval, the next saying how many were left out.
const refusalLogEvery = 10 * time.Second

// guard judges every request before the API sees it: it refuses what a
// browser sends for a web page, authenticates the producer by its client
// certificate's pin or its bearer token, and refuses a body that is not
// JSON. Each refusal is counted and logged, rate-limited; a token never
// is.
type guard struct {
	producers func() *producers.Config
	failures  *prometheus.CounterVec
	log       *slog.Logger
	logged    ratelog.Limiter // per reason
}

func newGuard(cfg func() *producers.Config, reg prometheus.Registerer, log *slog.Logger) (*guard, error) {
	g := &guard{
		producers: cfg,
		log:       log,
		failures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "relay_producer_auth_failures_total",
			Help: "Producer API requests refused before or by authorisation, by reason: no_credentials, bad_token, unknown_token, unknown_identity, forbidden, cross_origin, content_type.",
		}, []string{"reason"}),
		logged: ratelog.Limiter{Every: refusalLogEvery},
	}
	for _, r := range reasons() {
		g.failures.WithLabelValues(r)
	}
	if reg != nil {
		if err := reg.Register(g.failures); err != nil {
			return nil, fmt.Errorf("registering producer API metrics: %w", err)
		}
	}
	return g, nil
}

type producerKey struct{}

// producerOf is the producer a guarded request was authenticated as.
func producerOf(ctx context.Context) *producers.Producer {
	p, _ := ctx.Value(producerKey{}).(*producers.Producer)
	return p
}

func (g *guard) wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if site := r.Header.Get("Sec-Fetch-Site"); r.Header.Get("Origin") != "" || (site != "" && site != "same-origin" && site != "none") {
			g.refuse(w, r, nil, reasonCrossOrigin, http.StatusForbidden, ErrorDetail{Code: "cross_origin",
				Message: "requests from a web page are refused (Origin or Sec-Fetch-Site set); call the API from a program"}, "")
			return
		}
		p, reason, pin := g.authenticate(r)
		if p == nil {
			w.Header().Set("WWW-Authenticate", `Bearer realm="relay"`)
			g.refuse(w, r, nil, reason, http.StatusUnauthorized, ErrorDetail{Code: "unauthenticated",
				Message: unauthenticatedMessage(reason)}, pin)
			return
		}
		done, ok := admitProducer(w, r, p.Name)
		if !ok {
			return
		}
		defer done()
		if r.ContentLength != 0 {
			ct := r.Header.Get("Content-Type")
			if mt, _, err := mime.ParseMediaType(ct); err != nil || mt != "application/json" {
				g.refuse(w, r, p, reasonContentType, http.StatusUnsupportedMediaType, ErrorDetail{Code: "unsupported_media_type",
					Message: fmt.Sprintf("content type %q; send the body as application/json", abbreviate(ct))}, "")
				return
			}
		}
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), producerKey{}, p)))
	})
}

func unauthenticatedMessage(reason string) string {
	switch reason {
	case reasonUnknownIdentity:
		return "the client certificate's key is not in relay's producers file"
	case reasonBadToken:
		return "the Authorization header is not Bearer and a relay token"
	case reasonUnknownToken:
		return "the token is not in relay's producers file (revoked, or never added)"
	}
	return "no credentials: present a client certificate that relay's producers file pins, or a bearer token"
}

// authenticate finds the producer r comes from: by the pin of its client
// certificate (the TLS handshake proved the key), else by its token. A
// certificate no producer pins is refused even with a token beside it.
func (g *guard) authenticate(r *http.Request) (p *producers.Producer, reason, pin string) {
	c := g.producers()
	if r.TLS != nil && len(r.TLS.PeerCertificates) > 0 {
		pn, err := proto.PeerPin(*r.TLS)
		if err != nil {
			return nil, reasonUnknownIdentity, ""
		}
		if p, ok := c.LookupPin(pn); ok {
			return p, "", pn.String()
		}
		return nil, reasonUnknownIdentity, pn.String()
	}
	h := r.Header.Get("Authorization")
	if h == "" {
		return nil, reasonNoCredentials, ""
	}
	scheme, tok, ok := strings.Cut(h, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") || producers.CheckToken(tok) != nil {
		return nil, reasonBadToken, ""
	}
	if p, ok := c.LookupToken(tok); ok {
		return p, "", ""
	}
	return nil, reasonUnknownToken, ""
}

// refuse counts, logs (rate-limited) and answers a refusal. p is the
// producer when one was authenticated; pin that of an unknown client
// certificate.
func (g *guard) refuse(w http.ResponseWriter, r *http.Request, p *producers.Producer, reason string, status int, d ErrorDetail, pin string) {
	g.failures.WithLabelValues(reason).Inc()
	if ok, n := g.logged.Allow(reason, time.Now()); ok {
		attrs := []any{"reason", reason, "status", status, "method", r.Method, "path", abbreviate(r.URL.Path), "remote", r.RemoteAddr}
		if p != nil {
			attrs = append(attrs, "producer", p.Name)
		}
		if pin != "" {
			attrs = append(attrs, "pin", pin)
		}
		if n > 0 {
			attrs = append(attrs, "suppressed", n)
		}
		g.log.Warn("refused a producer request", attrs...)
	}
	writeError(w, status, d)
}

// forbid refuses an authenticated producer an action on a queue.
func (g *guard) forbid(w http.ResponseWriter, r *http.Request, field, queue string, a producers.Action) {
	p := producerOf(r.Context())
	g.refuse(w, r, p, reasonForbidden, http.StatusForbidden, ErrorDetail{Code: "permission_denied", Field: field,
		Message: fmt.Sprintf("producer %s may not %s jobs of queue %s (relay's producers file)", p.Name, a, queue)}, "")
}

func abbreviate(s string) string {
	if len(s) > 64 {
		return s[:61] + "..."
	}
	return s
}
