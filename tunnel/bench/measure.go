package bench

import (
	"context"
	"encoding/binary"
	"fmt"
	"net"
	"sort"
	"sync"
	"time"

	"github.com/tunnel-dev/tunnel/internal/procstat"
)

// tcpThroughput runs streams TCP connections to addr, each sending for d,
// and returns the bytes per second the far side counted.
func tcpThroughput(ctx context.Context, addr string, streams int, d time.Duration) (float64, error) {
	var wg sync.WaitGroup
	var mu sync.Mutex
	var total int64
	var firstErr error
	start := time.Now()
	for range streams {
		wg.Add(1)
		go func() {
			defer wg.Done()
			n, err := tcpStream(ctx, addr, d)
			mu.Lock()
			defer mu.Unlock()
			total += n
			if err != nil && firstErr == nil {
				firstErr = err
			}
		}()
	}
	wg.Wait()
	if firstErr != nil {
		return 0, firstErr
	}
	return float64(total) / time.Since(start).Seconds(), nil
}

// tcpStream sends for d, half-closes, and returns the count the sink read.
func tcpStream(ctx context.Context, addr string, d time.Duration) (int64, error) {
	var dialer net.Dialer
	c, err := dialer.DialContext(ctx, "tcp", addr)
	if err != nil {
		return 0, err
	}
	defer c.Close()
	buf := make([]byte, 256<<10)
	end := time.Now().Add(d)
	_ = c.SetWriteDeadline(end.Add(30 * time.Second))
	var sent int64
	for time.Now().Before(end) && ctx.Err() == nil {
		n, err := c.Write(buf)
		sent += int64(n)
		if err != nil {
			return 0, fmt.Errorf("sending: %w", err)
		}
	}
	if err := c.(*net.TCPConn).CloseWrite(); err != nil {
		return 0, err
	}
	_ = c.SetReadDeadline(time.Now().Add(60 * time.Second))
	var got int64
	if err := binary.Read(c, binary.BigEndian, &got); err != nil {
		return 0, fmt.Errorf("reading the sink's count: %w", err)
	}
	if got != sent {
		return 0, fmt.Errorf("sent %d bytes, the sink read %d", sent, got)
	}
	return got, nil
}

// udpRTT times count round trips of 64-byte datagrams to an echo at addr.
func udpRTT(ctx context.Context, addr string, count int) (p50, p99 time.Duration, err error) {
	c, err := net.Dial("udp", addr)
	if err != nil {
		return 0, 0, err
	}
	defer c.Close()
	return udpRTTOn(ctx, c, addr, count)
}

// udpRTTOn is udpRTT on a socket already connected to the echo. Each
// datagram carries its sequence number (after a zero first byte, which
// tells a QUIC sink sharing the echo's socket that it is not QUIC), and
// an echo of any other is skipped: datagrams the warm-up sent while the
// tunnel was still handshaking are all echoed once it is up, and timing
// the next round trip by one of those stale echoes measured microseconds
// across a link with a millisecond of delay.
func udpRTTOn(ctx context.Context, c net.Conn, addr string, count int) (p50, p99 time.Duration, err error) {
	msg := make([]byte, 64)
	buf := make([]byte, 2048)
	var seq uint64
	// roundTrip sends the next datagram and waits up to wait for its own
	// echo.
	roundTrip := func(wait time.Duration) error {
		seq++
		binary.BigEndian.PutUint64(msg[1:], seq)
		if _, err := c.Write(msg); err != nil {
			return err
		}
		deadline := time.Now().Add(wait)
		_ = c.SetReadDeadline(deadline)
		for {
			n, err := c.Read(buf)
			if err != nil {
				return err
			}
			if n == len(msg) && binary.BigEndian.Uint64(buf[1:]) == seq {
				return nil
			}
		}
	}
	// Warm up: the first datagrams may wait for a handshake, and
	// WireGuard repeats an unanswered initiation only every 5 s: 30 s
	// leaves room for several (a stock forwarder pair under the race
	// detector, beside other tests, once gave no echo in 11 s).
	for i := 0; ; i++ {
		if roundTrip(time.Second) == nil {
			break
		}
		if i == 29 || ctx.Err() != nil {
			return 0, 0, fmt.Errorf("no echo from %s", addr)
		}
	}
	rtts := make([]time.Duration, 0, count)
	lost := 0
	for len(rtts) < count && ctx.Err() == nil {
		start := time.Now()
		if err := roundTrip(time.Second); err != nil {
			if lost++; lost > count/10+3 {
				return 0, 0, fmt.Errorf("lost %d of %d round trips", lost, len(rtts)+lost)
			}
			continue
		}
		rtts = append(rtts, time.Since(start))
	}
	if len(rtts) == 0 {
		return 0, 0, ctx.Err()
	}
	sort.Slice(rtts, func(i, j int) bool { return rtts[i] < rtts[j] })
	return rtts[len(rtts)/2], rtts[len(rtts)*99/100], nil
}

// peakRSS is a process's peak resident set (VmHWM), in bytes.
func peakRSS(pid int) (uint64, error) { return procstat.PeakRSS(pid) }
