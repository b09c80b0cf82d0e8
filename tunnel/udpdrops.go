package tunnel

import (
	"bufio"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// udpDrops sums the kernel's drop counters of this process's UDP sockets:
// datagrams lost because a socket's receive buffer was full. An
// unprivileged pod cannot raise its buffers past the node's
// net.core.rmem_max, so this is the number that explains a slow tunnel.
// It reads /proc; elsewhere it reports zero.
func udpDrops() uint64 {
	inodes := map[string]bool{}
	fds, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return 0
	}
	for _, fd := range fds {
		link, err := os.Readlink(filepath.Join("/proc/self/fd", fd.Name()))
		if err != nil {
			continue
		}
		if inode, ok := strings.CutPrefix(link, "socket:["); ok {
			inodes[strings.TrimSuffix(inode, "]")] = true
		}
	}
	var total uint64
	for _, table := range []string{"/proc/self/net/udp", "/proc/self/net/udp6"} {
		total += sumDrops(table, inodes)
	}
	return total
}

// sumDrops reads one /proc/net/udp table: the inode is field 9 and the
// drop counter field 12 (zero-based) of each line after the header.
func sumDrops(path string, inodes map[string]bool) uint64 {
	f, err := os.Open(path)
	if err != nil {
		return 0
	}
	defer f.Close()
	var total uint64
	sc := bufio.NewScanner(f)
	sc.Scan() // header
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 13 || !inodes[fields[9]] {
			continue
		}
		if n, err := strconv.ParseUint(fields[12], 10, 64); err == nil {
			total += n
		}
	}
	return total
}
