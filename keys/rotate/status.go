package rotate

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/tunnel-dev/tunnel/keys"
)

// StatusSource reads a gateway's /status: one GatewayStatus for each
// running instance of it (a Deployment may briefly run two).
type StatusSource interface {
	Statuses(ctx context.Context) ([]GatewayStatus, error)
	String() string
}

// GatewayStatus is the part of a gateway's /status (the JSON of
// GatewayStatus) that a rotation reads. It is declared here, not imported,
// so that this package (and an operator's build of it) does not depend on
// the gateway itself; a test keeps the two in step.
type GatewayStatus struct {
	// PublicKey is the key the gateway runs.
	PublicKey string `json:"public_key"`
	// Peers are the gateway's WireGuard peers, one per key.
	Peers []PeerStatus `json:"peers"`
}

// PeerStatus is one WireGuard peer of a gateway.
type PeerStatus struct {
	// Name is the configured peer the key belongs to.
	Name string `json:"name"`
	// Key is "active" (the key that carries the peer's traffic),
	// "successor" (staged, not yet used) or "retired" (replaced by its
	// successor, not yet removed).
	Key           string    `json:"key,omitempty"`
	PublicKey     string    `json:"public_key"`
	LastHandshake time.Time `json:"last_handshake,omitzero"`
}

// HTTPStatus reads GET <URL>/status from a gateway's admin server (or
// through `kubectl port-forward` to it).
type HTTPStatus struct {
	URL *url.URL
	// Client makes the request; nil is a client with a 10-second timeout.
	Client *http.Client
}

// ParseStatusURL parses a gateway's admin base URL: http or https, with a
// host, and no query or fragment.
func ParseStatusURL(s string) (*url.URL, error) {
	u, err := url.Parse(s)
	if err != nil {
		return nil, fmt.Errorf("status address %q: %w", abbreviate(s), err)
	}
	if u.Scheme != "http" && u.Scheme != "https" || u.Host == "" {
		return nil, fmt.Errorf("status address %q: want the gateway's admin URL, such as http://127.0.0.1:9090, or pod:[CONTEXT/]NAMESPACE/SELECTOR[:PORT]", abbreviate(s))
	}
	if u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		return nil, fmt.Errorf("status address %q: no user, query or fragment, please: /status is added to it", abbreviate(s))
	}
	return u, nil
}

func (h *HTTPStatus) String() string { return h.URL.String() }

// maxStatusBytes bounds a /status body.
const maxStatusBytes = 8 << 20

// Statuses fetches the one gateway's status.
func (h *HTTPStatus) Statuses(ctx context.Context) ([]GatewayStatus, error) {
	c := h.Client
	if c == nil {
		c = &http.Client{Timeout: 10 * time.Second}
	}
	u := h.URL.JoinPath("status")
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return nil, fmt.Errorf("GET %s: %w", u, err)
	}
	resp, err := c.Do(req)
	if err != nil {
		return nil, err // names the URL
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s", u, resp.Status)
	}
	st, err := DecodeStatus(io.LimitReader(resp.Body, maxStatusBytes))
	if err != nil {
		return nil, fmt.Errorf("GET %s: %w", u, err)
	}
	return []GatewayStatus{st}, nil
}

// DecodeStatus decodes a gateway's /status JSON and checks the keys in it.
func DecodeStatus(r io.Reader) (GatewayStatus, error) {
	var st GatewayStatus
	if err := json.NewDecoder(r).Decode(&st); err != nil {
		return st, fmt.Errorf("decoding the gateway's status: %w", err)
	}
	if _, err := keys.ParsePublicKey(st.PublicKey); err != nil {
		return st, fmt.Errorf("decoding the gateway's status: public_key: %w", err)
	}
	for i, p := range st.Peers {
		if _, err := keys.ParsePublicKey(p.PublicKey); err != nil {
			return st, fmt.Errorf("decoding the gateway's status: peers[%d].public_key: %w", i, err)
		}
	}
	return st, nil
}

// abbreviate keeps an echoed argument short.
func abbreviate(s string) string {
	if len(s) > 80 {
		return s[:77] + "..."
	}
	return s
}

// view is both gateways' statuses at one poll.
type view struct {
	this, peer []GatewayStatus
}

// runs reports whether every instance of this side's gateway runs k.
func (v view) runs(k keys.PublicKey) bool {
	for _, st := range v.this {
		if st.PublicKey != k.String() {
			return false
		}
	}
	return len(v.this) > 0
}

// peerEntry finds k among a peer gateway's peers.
func peerEntry(st GatewayStatus, k keys.PublicKey) (PeerStatus, bool) {
	for _, p := range st.Peers {
		if p.PublicKey == k.String() {
			return p, true
		}
	}
	return PeerStatus{}, false
}

// lists reports whether every instance of the peer's gateway has k as a
// WireGuard peer (active, successor or retired).
func (v view) lists(k keys.PublicKey) bool {
	for _, st := range v.peer {
		if _, ok := peerEntry(st, k); !ok {
			return false
		}
	}
	return len(v.peer) > 0
}

// listsNone reports whether no instance of the peer's gateway has k.
func (v view) listsNone(k keys.PublicKey) bool {
	for _, st := range v.peer {
		if _, ok := peerEntry(st, k); ok {
			return false
		}
	}
	return len(v.peer) > 0
}

// active reports whether every instance of the peer's gateway has k as
// the active key of a peer, with a handshake: this side's traffic flows
// under k.
func (v view) active(k keys.PublicKey) bool {
	for _, st := range v.peer {
		p, ok := peerEntry(st, k)
		if !ok || p.Key != "active" || p.LastHandshake.IsZero() {
			return false
		}
	}
	return len(v.peer) > 0
}

// listsOnly reports whether the peer's gateway has no key for peer name
// other than k.
func (v view) listsOnly(name string, k keys.PublicKey) bool {
	for _, st := range v.peer {
		for _, p := range st.Peers {
			if p.Name == name && p.PublicKey != k.String() {
				return false
			}
		}
	}
	return len(v.peer) > 0
}

// seen describes the view for a timeout message: the key this side runs
// and the keys the peer's gateway holds for it.
func (v view) seen(name string, known ...keys.PublicKey) string {
	var parts []string
	for _, st := range v.this {
		parts = append(parts, "this side's gateway runs "+fingerprintOf(st.PublicKey))
	}
	now := time.Now()
	for _, st := range v.peer {
		var ks []string
		for _, p := range st.Peers {
			isKnown := false
			for _, k := range known {
				isKnown = isKnown || p.PublicKey == k.String()
			}
			if p.Name != name && !isKnown {
				continue
			}
			hs := "no handshake"
			if !p.LastHandshake.IsZero() {
				hs = "handshake " + now.Sub(p.LastHandshake).Round(time.Second).String() + " ago"
			}
			ks = append(ks, fmt.Sprintf("%s %s (%s)", fingerprintOf(p.PublicKey), orWord(p.Key, "unnamed"), hs))
		}
		if len(ks) == 0 {
			ks = []string{"no key"}
		}
		parts = append(parts, "the peer's gateway holds "+strings.Join(ks, ", ")+" for "+name)
	}
	return strings.Join(parts, "; ")
}

func fingerprintOf(b64 string) string {
	k, err := keys.ParsePublicKey(b64)
	if err != nil {
		return "(unreadable key)"
	}
	return k.Fingerprint()
}

func orWord(s, w string) string {
	if s == "" {
		return w
	}
	return s
}
