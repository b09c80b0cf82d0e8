package hostport

import (
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
)

// Check reports whether s, less the spaces around it, is host:port. The
// host may not hold a space or '/'. A listen address (listen true) may
// leave the host empty ("":7000, all addresses) and use port 0 (any free
// port); an address to dial needs a host and a port from 1 to 65535. The
// error quotes s and says what is wrong.
func Check(s string, listen bool) error {
	host, port, err := net.SplitHostPort(strings.TrimSpace(s))
	if err != nil {
		return fmt.Errorf("%q is not host:port: %s", s, cleanAddrErr(err))
	}
	if host == "" && !listen {
		return fmt.Errorf("%q has no host", s)
	}
	if strings.ContainsAny(host, " /") {
		return fmt.Errorf("%q is not a valid host", host)
	}
	least := 1
	if listen {
		least = 0
	}
	v, err := strconv.Atoi(port)
	if err != nil || v < least || v > 65535 {
		return fmt.Errorf("%q: port %q is not a number from %d to 65535", s, port, least)
	}
	return nil
}

// cleanAddrErr is what net.SplitHostPort found wrong, without the input
// it repeats.
func cleanAddrErr(err error) string {
	var ae *net.AddrError
	if errors.As(err, &ae) {
		return ae.Err
	}
	return err.Error()
}
