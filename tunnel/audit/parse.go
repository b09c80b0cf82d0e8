package audit

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// ParsePorts parses a port list such as "1-1024,8000,9000-9100": ports
// and inclusive ranges between 1 and 65535, comma-separated.
func ParsePorts(s string) ([]uint16, error) {
	var out []uint16
	for item := range strings.SplitSeq(s, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			return nil, fmt.Errorf("port list %q: empty item", s)
		}
		lo, hi, isRange := strings.Cut(item, "-")
		from, err := parsePort(lo)
		if err != nil {
			return nil, fmt.Errorf("port list %q: %w", s, err)
		}
		to := from
		if isRange {
			if to, err = parsePort(hi); err != nil {
				return nil, fmt.Errorf("port list %q: %w", s, err)
			}
			if to < from {
				return nil, fmt.Errorf("port list %q: range %s runs backwards", s, item)
			}
		}
		for p := int(from); p <= int(to); p++ {
			out = append(out, uint16(p))
		}
	}
	return out, nil
}

func parsePort(s string) (uint16, error) {
	n, err := strconv.ParseUint(strings.TrimSpace(s), 10, 16)
	if err != nil || n == 0 {
		return 0, fmt.Errorf("%q is not a port between 1 and 65535", s)
	}
	return uint16(n), nil
}

// ParseExpect parses "tcp/10.99.0.1:9000" or "udp/[fd00::1]:53".
func ParseExpect(s string) (Expect, error) {
	proto, addr, ok := strings.Cut(s, "/")
	if !ok || (proto != "tcp" && proto != "udp") {
		return Expect{}, fmt.Errorf("expected answer %q: want tcp/ADDRESS:PORT or udp/ADDRESS:PORT", s)
	}
	ap, err := netip.ParseAddrPort(addr)
	if err != nil || ap.Port() == 0 {
		return Expect{}, fmt.Errorf("expected answer %q: %q is not an IP address and port", s, addr)
	}
	return Expect{Protocol: proto, Addr: netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())}, nil
}
