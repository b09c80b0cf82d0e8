package tunnel

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync/atomic"

	"golang.zx2c4.com/wireguard/device"
)

// The lines wireguard-go logs for the refusals the gateway counts, as
// format strings. wireguard-go has no counters for these, and nothing
// outside it sees them: a spoofed inner source is dropped after
// decryption, before the packet reaches the netstack, and a refused
// initiation is judged by its Noise state. So they are counted by exact
// match on the format, and wglog_test.go drives each condition through a
// real device: a line reworded upstream fails that test instead of
// silently zeroing the metric.
const (
	wgLineSpoofedV4     = "IPv4 packet with disallowed source address from %v"
	wgLineSpoofedV6     = "IPv6 packet with disallowed source address from %v"
	wgLineBadInitiation = "Received invalid initiation message from %s" // a key we do not know
	wgLineBadMAC1       = "Received packet with invalid mac1"           // sent to a key that is not ours
)

// wgCounters count what wireguard-go refuses, from the lines above.
type wgCounters struct {
	spoofed          atomic.Uint64 // inner source outside the sending peer's allowed IPs
	handshakeRefused atomic.Uint64 // initiations from keys we do not know, or bad MACs
	auth             *authEvents   // logs refused handshakes, rate-limited; nil: count only
}

func (c *wgCounters) counts() WireGuardCounts {
	return WireGuardCounts{SpoofedSource: c.spoofed.Load(), HandshakeRefused: c.handshakeRefused.Load()}
}

// count counts one verbose line by its format. A refused initiation's
// only argument is the source it came from.
func (c *wgCounters) count(format string, args ...any) {
	switch format {
	case wgLineSpoofedV4, wgLineSpoofedV6:
		c.spoofed.Add(1)
	case wgLineBadInitiation, wgLineBadMAC1:
		c.handshakeRefused.Add(1)
		if c.auth == nil {
			return
		}
		source := ""
		if format == wgLineBadInitiation && len(args) == 1 {
			source = fmt.Sprint(args[0])
		}
		c.auth.unknownKey(source)
	}
}

// wgLogger adapts wireguard-go's printf logger to slog at debug level and
// counts the refusals the gateway reports as metrics. wireguard-go never
// formats key material into its messages.
func wgLogger(l *slog.Logger, c *wgCounters) *device.Logger {
	debug := l.Enabled(context.Background(), slog.LevelDebug)
	return &device.Logger{
		Verbosef: func(format string, args ...any) {
			c.count(format, args...)
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
