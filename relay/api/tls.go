package api

import (
	"crypto/tls"
	"fmt"
	"net/http"
	"time"

	"github.com/tunnel-dev/tunnel/keys"
	"github.com/tunnel-dev/tunnel/relay/proto"
)

// ServerTLS is the API's TLS configuration: relay's identity (the one
// workers pin), TLS 1.2 or later, and a client certificate requested but
// not required, since a producer may use a token instead. A certificate
// is not checked against any CA: its key's pin, which the handshake
// proved the client holds, is looked up in the producers file on every
// request.
func ServerTLS(id keys.Identity) *tls.Config {
	return &tls.Config{
		Certificates: []tls.Certificate{id.Certificate},
		MinVersion:   tls.VersionTLS12,
		ClientAuth:   tls.RequestClientCert,
		NextProtos:   []string{"h2", "http/1.1"},
	}
}

// ClientTLS is a producer's TLS configuration: relay trusted by its pin
// alone (its certificate is self-signed), and the producer's identity
// when it has one (nil: it authenticates with a token).
func ClientTLS(relayPin keys.Pin, id *keys.Identity) *tls.Config {
	c := &tls.Config{
		MinVersion: tls.VersionTLS12,
		ServerName: "relay",
		// Chain verification is replaced by the pin check in
		// VerifyConnection, which runs regardless.
		InsecureSkipVerify: true,
		VerifyConnection: func(cs tls.ConnectionState) error {
			pin, err := proto.PeerPin(cs)
			if err != nil {
				return err
			}
			if pin != relayPin {
				return fmt.Errorf("relay presented key %s, not the pinned %s", pin, relayPin)
			}
			return nil
		},
	}
	if id != nil {
		c.Certificates = []tls.Certificate{id.Certificate}
	}
	return c
}

// HTTPClient is an HTTP client for the API over cfg (from ClientTLS),
// giving up on a call after timeout.
func HTTPClient(cfg *tls.Config, timeout time.Duration) *http.Client {
	return &http.Client{Timeout: timeout, Transport: &http.Transport{
		TLSClientConfig:     cfg,
		ForceAttemptHTTP2:   true,
		TLSHandshakeTimeout: 10 * time.Second,
		MaxIdleConnsPerHost: 16,
		IdleConnTimeout:     90 * time.Second,
	}}
}
