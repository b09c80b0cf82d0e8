package tunnel

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sync"
	"time"

	"golang.zx2c4.com/wireguard/device"
)

// uapiServer serves wireguard-go's configuration protocol on a unix socket
// at <dir>/<name>.sock, where `wg show` and wgctrl look for userspace
// devices. It answers "get" and refuses "set": the gateway's configuration
// comes from its file, and a socket that could add a peer would be a way
// around its policy.
type uapiServer struct {
	ln   net.Listener
	path string
	dev  *device.Device
	log  *slog.Logger
	wg   sync.WaitGroup
}

func listenUAPI(dir, name string, dev *device.Device, log *slog.Logger) (*uapiServer, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("creating UAPI socket directory: %w", err)
	}
	path := filepath.Join(dir, name+".sock")
	// A socket left by a crashed gateway is stale only if nothing answers.
	if c, err := net.DialTimeout("unix", path, 200*time.Millisecond); err == nil {
		c.Close()
		return nil, fmt.Errorf("creating UAPI socket: %s is in use by a running process (another gateway named %q?)", path, name)
	}
	_ = os.Remove(path)
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("creating UAPI socket: %w", err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		ln.Close()
		return nil, fmt.Errorf("creating UAPI socket: %w", err)
	}
	s := &uapiServer{ln: ln, path: path, dev: dev, log: log}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		s.serve()
	}()
	return s, nil
}

func (s *uapiServer) serve() {
	for {
		c, err := s.ln.Accept()
		if err != nil {
			if !errors.Is(err, net.ErrClosed) {
				s.log.Warn("UAPI accept failed", "err", err)
			}
			return
		}
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			defer c.Close()
			s.handle(c)
		}()
	}
}

// handle answers requests on one connection, as wireguard-go's own IpcHandle
// does, except that "set" is refused with EPERM.
func (s *uapiServer) handle(c net.Conn) {
	r := bufio.NewReader(io.LimitReader(c, 1<<20))
	for {
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		op, err := r.ReadString('\n')
		if err != nil {
			return
		}
		switch op {
		case "get=1\n":
			if nl, err := r.ReadString('\n'); err != nil || nl != "\n" {
				return
			}
			var errno int
			if err := s.dev.IpcGetOperation(c); err != nil {
				errno = 1
			}
			if _, err := fmt.Fprintf(c, "errno=%d\n\n", errno); err != nil {
				return
			}
		case "set=1\n":
			// Read the request through its blank line, then refuse it.
			for {
				line, err := r.ReadString('\n')
				if err != nil {
					return
				}
				if line == "\n" {
					break
				}
			}
			s.log.Warn("refused a configuration change on the UAPI socket; the gateway is configured by its file")
			if _, err := fmt.Fprintf(c, "errno=%d\n\n", 1); err != nil {
				return
			}
		default:
			return
		}
	}
}

func (s *uapiServer) Close() error {
	err := s.ln.Close()
	s.wg.Wait()
	_ = os.Remove(s.path)
	return err
}
