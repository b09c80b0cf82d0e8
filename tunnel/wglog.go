package tunnel

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync/atomic"

	"golang.zx2c4.com/wireguard/device"
)

// wgCounters count what wireguard-go refuses, read from its log lines: it
// has no counters of its own for these.
type wgCounters struct {
	spoofed          atomic.Uint64 // inner source outside the sending peer's allowed IPs
	handshakeRefused atomic.Uint64 // initiations from keys we do not know, or bad MACs
}

// wgLogger adapts wireguard-go's printf logger to slog at debug level and
// counts the refusals the gateway reports as metrics. wireguard-go never
// formats key material into its messages.
func wgLogger(l *slog.Logger, c *wgCounters) *device.Logger {
	debug := l.Enabled(context.Background(), slog.LevelDebug)
	return &device.Logger{
		Verbosef: func(format string, args ...any) {
			switch {
			case strings.Contains(format, "packet with disallowed source address"):
				c.spoofed.Add(1)
			case strings.HasPrefix(format, "Received invalid initiation message"),
				strings.HasPrefix(format, "Received packet with invalid mac1"):
				c.handshakeRefused.Add(1)
			}
			if debug {
				l.Debug(fmt.Sprintf(format, args...), "component", "wireguard")
			}
		},
		Errorf: func(format string, args ...any) {
			msg := fmt.Sprintf(format, args...)
			if strings.Contains(msg, "no known endpoint for peer") {
				// The normal state of the listening side until its peer
				// dials in; not worth a warning per retry.
				l.Debug(msg, "component", "wireguard")
				return
			}
			l.Warn(msg, "component", "wireguard")
		},
	}
}

func (c *wgCounters) counts() WireGuardCounts {
	return WireGuardCounts{SpoofedSource: c.spoofed.Load(), HandshakeRefused: c.handshakeRefused.Load()}
}
