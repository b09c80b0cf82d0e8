package proto

import (
	"crypto/tls"
	"errors"
	"fmt"

	"github.com/tunnel-dev/tunnel/keys"
)

// ServerTLS is relay's TLS configuration: its identity, TLS 1.3 only, ALPN
// relay/1, and a client certificate that must be presented and is judged
// by authorize, by its pin, before the handshake completes. A pin that
// authorize refuses fails the handshake (the worker sees a TLS
// bad_certificate alert); no CA is involved.
func ServerTLS(id keys.Identity, authorize func(keys.Pin) error) *tls.Config {
	return &tls.Config{
		Certificates: []tls.Certificate{id.Certificate},
		MinVersion:   tls.VersionTLS13,
		NextProtos:   []string{ALPN},
		ClientAuth:   tls.RequireAnyClientCert,
		VerifyConnection: func(cs tls.ConnectionState) error {
			pin, err := PeerPin(cs)
			if err != nil {
				return err
			}
			return authorize(pin)
		},
	}
}

// ClientTLS is a worker's TLS configuration: its identity, TLS 1.3 only,
// ALPN relay/1, and relay trusted by its pin alone.
func ClientTLS(id keys.Identity, relayPin keys.Pin) *tls.Config {
	return &tls.Config{
		Certificates: []tls.Certificate{id.Certificate},
		MinVersion:   tls.VersionTLS13,
		NextProtos:   []string{ALPN},
		ServerName:   "relay",
		// relay's certificate is self-signed: chain verification is
		// replaced by the pin check in VerifyConnection, which runs
		// regardless.
		InsecureSkipVerify: true,
		VerifyConnection: func(cs tls.ConnectionState) error {
			pin, err := PeerPin(cs)
			if err != nil {
				return err
			}
			if pin != relayPin {
				return fmt.Errorf("relay presented key %s, not the pinned %s", pin, relayPin)
			}
			return nil
		},
	}
}

// PeerPin is the pin of the certificate the peer presented.
func PeerPin(cs tls.ConnectionState) (keys.Pin, error) {
	if len(cs.PeerCertificates) == 0 {
		return keys.Pin{}, errors.New("the peer presented no certificate")
	}
	return keys.PinOf(cs.PeerCertificates[0]), nil
}
