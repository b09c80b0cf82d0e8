package worker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/tunnel-dev/tunnel/relay/client"
)

func TestDialProblem(t *testing.T) {
	const addr = "gw.tunnel:7443"
	for _, tc := range []struct {
		name      string
		err       error
		connected bool
		level     slog.Level
		msg       string
		showErr   bool
	}{
		{"dial timeout, never connected", fmt.Errorf("dialing: %w", context.DeadlineExceeded), false, slog.LevelWarn, "nothing answered at gw.tunnel:7443 within 15s (check relay.address, the local gateway's forward rule", false},
		{"handshake idle timeout", fmt.Errorf("dialing: %w", &quic.IdleTimeoutError{}), false, slog.LevelWarn, "nothing answered at gw.tunnel:7443", false},
		{"timeout after an outage began", &quic.HandshakeTimeoutError{}, true, slog.LevelWarn, "relay at gw.tunnel:7443 stopped answering", false},
		{"refused identity", fmt.Errorf("dialing: %w", client.ErrUnauthorized), false, slog.LevelError, "refused this identity (add bunny's pin", true},
		{"wrong relay", fmt.Errorf("dialing: %w", client.ErrWrongRelay), true, slog.LevelError, "is not the pinned relay", true},
		{"version", client.ErrVersion, false, slog.LevelError, "another protocol version", true},
		{"no such host", &net.DNSError{Err: "no such host", Name: "gw.tunnel", IsNotFound: true}, false, slog.LevelWarn, "cannot resolve relay's address gw.tunnel:7443 (check relay.address)", true},
		{"anything else", errors.New("boom"), false, slog.LevelWarn, "cannot connect to relay at gw.tunnel:7443", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			level, msg, showErr := dialProblem(addr, tc.err, tc.connected, 15*time.Second)
			if level != tc.level || !strings.Contains(msg, tc.msg) || showErr != tc.showErr {
				t.Errorf("got %v %q %v; want %v, %q, %v", level, msg, showErr, tc.level, tc.msg, tc.showErr)
			}
		})
	}
	if h := lostHint(fmt.Errorf("connection: %w", &quic.IdleTimeoutError{})); !strings.Contains(h, "idle timeout") {
		t.Errorf("idle timeout: %q", h)
	}
	if h := lostHint(client.ErrCredentialsRevoked); !strings.Contains(h, "workers file") {
		t.Errorf("revoked: %q", h)
	}
	if h := lostHint(errors.New("other")); h != "" {
		t.Errorf("other: %q", h)
	}
}
