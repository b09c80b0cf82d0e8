package main

import (
	"bufio"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/tunnel-dev/tunnel/internal/admin"
	"github.com/tunnel-dev/tunnel/tunnel"
)

// runningGateways names the gateways whose UAPI sockets in dir answer: a
// socket left by a gateway that died refuses connections.
func runningGateways(dir string) ([]string, error) {
	paths, err := filepath.Glob(filepath.Join(dir, "*.sock"))
	if err != nil {
		return nil, err
	}
	var names []string
	for _, p := range paths {
		c, err := net.DialTimeout("unix", p, time.Second)
		if err != nil {
			continue
		}
		_ = c.Close()
		names = append(names, strings.TrimSuffix(filepath.Base(p), ".sock"))
	}
	slices.Sort(names)
	return names, nil
}

// adminOf finds the admin endpoint of gateway name, whose UAPI socket is
// sock: the process that holds the socket is the gateway, and of the TCP
// ports it listens on, the admin endpoint is the one whose /status names
// it. It reads /proc, so it finds only processes this user may inspect.
func adminOf(ctx context.Context, sock, name string) (string, error) {
	inodes, err := unixInodes("/proc/net/unix", sock)
	if err != nil {
		return "", err
	}
	if len(inodes) == 0 {
		return "", fmt.Errorf("no process holds %s", sock)
	}
	pid, sockets, err := socketOwner(inodes)
	if err != nil {
		return "", err
	}
	var listens []string
	for _, f := range []string{"tcp", "tcp6"} {
		l, err := tcpListens(fmt.Sprintf("/proc/%d/net/%s", pid, f), sockets)
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			return "", err
		}
		listens = append(listens, l...)
	}
	for _, l := range listens {
		base := admin.URL(l)
		actx, cancel := context.WithTimeout(ctx, time.Second)
		var st tunnel.Status
		err := admin.Get(actx, base, "/status", &st)
		cancel()
		if err == nil && st.Name == name {
			return base, nil
		}
	}
	return "", fmt.Errorf("process %d, which holds %s, serves no admin endpoint of %s on TCP (admin.listen: - ?)", pid, sock, name)
}

// unixInodes are the inodes of the unix sockets bound to path, from
// /proc/net/unix ("Num RefCount Protocol Flags Type St Inode Path").
func unixInodes(table, path string) (map[string]bool, error) {
	f, err := os.Open(table)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	out := map[string]bool{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) >= 8 && fields[7] == path {
			out[fields[6]] = true
		}
	}
	return out, sc.Err()
}

// socketOwner finds the process with a descriptor on one of the socket
// inodes, and every socket inode it has open.
func socketOwner(inodes map[string]bool) (pid int, sockets map[string]bool, err error) {
	procs, err := os.ReadDir("/proc")
	if err != nil {
		return 0, nil, err
	}
	for _, p := range procs {
		id, err := strconv.Atoi(p.Name())
		if err != nil {
			continue
		}
		fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", id))
		if err != nil {
			continue // gone, or not ours to read
		}
		mine, found := map[string]bool{}, false
		for _, fd := range fds {
			link, err := os.Readlink(fmt.Sprintf("/proc/%d/fd/%s", id, fd.Name()))
			inode, ok := strings.CutPrefix(link, "socket:[")
			if err != nil || !ok {
				continue
			}
			inode = strings.TrimSuffix(inode, "]")
			mine[inode] = true
			found = found || inodes[inode]
		}
		if found {
			return id, mine, nil
		}
	}
	return 0, nil, errors.New("no process found holding the socket (another user's, or in another PID namespace)")
}

// tcpListens are the listening addresses (state 0A) among sockets, from a
// /proc/PID/net/tcp or tcp6 table.
func tcpListens(table string, sockets map[string]bool) ([]string, error) {
	f, err := os.Open(table)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 10 || fields[3] != "0A" || !sockets[fields[9]] {
			continue
		}
		if ap, err := procAddr(fields[1]); err == nil {
			out = append(out, ap.String())
		}
	}
	return out, sc.Err()
}

// procAddr decodes /proc/net/tcp's "0100007F:1F90": the address in host
// order 32-bit words (little-endian here), the port in hex.
func procAddr(s string) (netip.AddrPort, error) {
	host, port, ok := strings.Cut(s, ":")
	b, err := hex.DecodeString(host)
	p, perr := strconv.ParseUint(port, 16, 16)
	if !ok || err != nil || perr != nil || (len(b) != 4 && len(b) != 16) {
		return netip.AddrPort{}, fmt.Errorf("address %q: not /proc/net/tcp's form", s)
	}
	for i := 0; i < len(b); i += 4 {
		b[i], b[i+1], b[i+2], b[i+3] = b[i+3], b[i+2], b[i+1], b[i]
	}
	a, _ := netip.AddrFromSlice(b)
	return netip.AddrPortFrom(a.Unmap(), uint16(p)), nil
}
