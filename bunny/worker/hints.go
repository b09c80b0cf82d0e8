package worker

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"time"

	"github.com/tunnel-dev/tunnel/relay/client"
)

// dialProblem is what a failed dial tells a person: how grave it is, what
// happened, and what to check. everConnected says whether bunny has been
// connected since it started: a timeout before that is most likely a
// wrong address or a tunnel that is not up, after it an outage.
func dialProblem(addr string, err error, everConnected bool, waited time.Duration) (level slog.Level, msg string, showErr bool) {
	var ne net.Error
	var dns *net.DNSError
	switch {
	case errors.Is(err, client.ErrUnauthorized):
		return slog.LevelError, fmt.Sprintf("relay at %s refused this identity (add bunny's pin, `tunnel keys pin identity.crt`, to relay's workers file)", addr), true
	case errors.Is(err, client.ErrWrongRelay):
		return slog.LevelError, fmt.Sprintf("the server at %s is not the pinned relay (relay.pin must be relay's pin: relay logs it at start)", addr), true
	case errors.Is(err, client.ErrVersion):
		return slog.LevelError, fmt.Sprintf("relay at %s speaks another protocol version (run matching versions of bunny and relay)", addr), true
	case errors.As(err, &dns):
		return slog.LevelWarn, fmt.Sprintf("cannot resolve relay's address %s (check relay.address)", addr), true
	case errors.As(err, &ne) && ne.Timeout() && !everConnected:
		return slog.LevelWarn, fmt.Sprintf("nothing answered at %s within %s (check relay.address, the local gateway's forward rule for it, and that relay's gateway and relay are up: `tunnel status` on each gateway)", addr, waited.Round(100*time.Millisecond)), false
	case errors.As(err, &ne) && ne.Timeout():
		return slog.LevelWarn, fmt.Sprintf("relay at %s stopped answering: nothing within %s (the tunnel, the far gateway or relay is down: `tunnel status` on each gateway says which)", addr, waited.Round(100*time.Millisecond)), false
	}
	return slog.LevelWarn, fmt.Sprintf("cannot connect to relay at %s", addr), true
}

// lostHint says what a connection's end most likely means, or "".
func lostHint(err error) string {
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return "nothing came back from relay for the idle timeout: the tunnel, the far gateway or relay went away"
	}
	if errors.Is(err, client.ErrCredentialsRevoked) {
		return "bunny's pin was removed from relay's workers file"
	}
	return ""
}
