package pgtest

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// Options shape a server. The zero value is a fast server for tests that
// do not crash it.
type Options struct {
	// Fsync keeps fsync on, for tests that crash the server and count what
	// survived (off otherwise: much faster, and a clean stop loses nothing).
	Fsync bool
	// Settings are extra postgresql.conf lines, name to value.
	Settings map[string]string
}

// Superuser is the name of the server's superuser role.
const Superuser = "postgres"

// port only names the socket file: the server listens on no TCP port.
const port = 5432

// Server is one running PostgreSQL cluster, stopped and deleted when the
// test that started it ends.
type Server struct {
	t    testing.TB
	bin  string
	root string // owned by the server's user: data/, the socket, server.log
	cred *syscall.Credential

	mu      sync.Mutex
	running bool
	dbs     int
}

// Start initialises and starts a server, or skips t when PostgreSQL is not
// installed.
func Start(t testing.TB, opts Options) *Server {
	t.Helper()
	bin, err := findBin()
	if err != nil {
		t.Skip("pgtest: " + err.Error())
	}
	cred, uid, gid, err := serverUser()
	if err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	root, err := os.MkdirTemp("", "pgtest")
	if err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	s := &Server{t: t, bin: bin, root: root, cred: cred}
	t.Cleanup(s.cleanup)
	if cred != nil {
		if err := os.Chown(root, uid, gid); err != nil {
			t.Fatalf("pgtest: giving %s to the server's user: %v", root, err)
		}
	}
	if err := s.run("initdb", "-D", s.data(), "-U", Superuser, "--auth=trust", "--no-sync", "-E", "UTF8", "--locale=C"); err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	conf := map[string]string{
		"listen_addresses":        "''",
		"unix_socket_directories": "'" + root + "'",
		"port":                    strconv.Itoa(port),
		"fsync":                   "off",
		"synchronous_commit":      "off",
		"full_page_writes":        "off",
		"shared_buffers":          "32MB",
		"max_connections":         "200",
		"log_min_messages":        "warning",
	}
	if opts.Fsync {
		conf["fsync"], conf["synchronous_commit"], conf["full_page_writes"] = "on", "on", "on"
	}
	for k, v := range opts.Settings {
		conf[k] = v
	}
	var b strings.Builder
	b.WriteString("\n# pgtest\n")
	for k, v := range conf {
		fmt.Fprintf(&b, "%s = %s\n", k, v)
	}
	f, err := os.OpenFile(filepath.Join(s.data(), "postgresql.conf"), os.O_APPEND|os.O_WRONLY, 0)
	if err == nil {
		_, err = f.WriteString(b.String())
		if cerr := f.Close(); err == nil {
			err = cerr
		}
	}
	if err != nil {
		t.Fatalf("pgtest: writing postgresql.conf: %v", err)
	}
	s.Start()
	return s
}

// serverUser is who runs the server: the current user unless that is
// root, then the postgres system user, else nobody.
func serverUser() (cred *syscall.Credential, uid, gid int, err error) {
	if os.Geteuid() != 0 {
		return nil, 0, 0, nil
	}
	for _, name := range []string{"postgres", "nobody"} {
		u, err := user.Lookup(name)
		if err != nil {
			continue
		}
		uid, err1 := strconv.Atoi(u.Uid)
		gid, err2 := strconv.Atoi(u.Gid)
		if err1 != nil || err2 != nil {
			continue
		}
		return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}, uid, gid, nil
	}
	return nil, 0, 0, fmt.Errorf("running as root and neither the postgres nor the nobody user exists to run PostgreSQL as")
}

func (s *Server) data() string { return filepath.Join(s.root, "data") }
func (s *Server) log() string  { return filepath.Join(s.root, "server.log") }

// run runs one of the server's binaries as the server's user.
func (s *Server) run(name string, args ...string) error {
	cmd := exec.Command(filepath.Join(s.bin, name), args...)
	cmd.Dir = s.root
	cmd.Env = []string{"PATH=" + s.bin + ":/usr/bin:/bin", "LC_ALL=C", "TZ=UTC"}
	if s.cred != nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: s.cred}
	}
	// A file, not a pipe: a server started by pg_ctl keeps what it
	// inherits open, and Run would wait for a pipe to close forever.
	out, err := os.CreateTemp("", "pgtest-out")
	if err != nil {
		return err
	}
	defer os.Remove(out.Name())
	defer out.Close()
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Run(); err != nil {
		b, _ := os.ReadFile(out.Name())
		return fmt.Errorf("%s %s: %w\n%s", name, strings.Join(args, " "), err, b)
	}
	return nil
}

// Start starts a stopped server on the same data.
func (s *Server) Start() {
	s.t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.running {
		s.t.Fatal("pgtest: Start on a running server")
	}
	if err := s.run("pg_ctl", "start", "-w", "-t", "60", "-D", s.data(), "-l", s.log()); err != nil {
		s.t.Fatalf("pgtest: %v\n%s", err, s.logTail())
	}
	s.running = true
}

// Stop stops the server: at once if immediate (as a crash would: no
// checkpoint, clients cut off), else after a fast shutdown.
func (s *Server) Stop(immediate bool) {
	s.t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.stop(immediate); err != nil {
		s.t.Fatalf("pgtest: %v", err)
	}
}

func (s *Server) stop(immediate bool) error {
	if !s.running {
		return nil
	}
	mode := "fast"
	if immediate {
		mode = "immediate"
	}
	if err := s.run("pg_ctl", "stop", "-w", "-t", "60", "-m", mode, "-D", s.data()); err != nil {
		return err
	}
	s.running = false
	return nil
}

// Restart is pg_ctl restart: with immediate, every client connection is
// cut as in a crash and the server recovers from its WAL.
func (s *Server) Restart(immediate bool) {
	s.t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	mode := "fast"
	if immediate {
		mode = "immediate"
	}
	if err := s.run("pg_ctl", "restart", "-w", "-t", "60", "-m", mode, "-D", s.data(), "-l", s.log()); err != nil {
		s.t.Fatalf("pgtest: %v\n%s", err, s.logTail())
	}
	s.running = true
}

// DSN is a connection URL for database db as role, over the unix socket.
func (s *Server) DSN(db, role string) string {
	u := url.URL{Scheme: "postgres", Path: "/" + db, User: url.User(role)}
	u.RawQuery = url.Values{"host": {s.root}, "port": {strconv.Itoa(port)}, "sslmode": {"disable"}}.Encode()
	return u.String()
}

// NewDB creates an empty database and returns the superuser's DSN for it.
func (s *Server) NewDB(t testing.TB) string {
	t.Helper()
	s.mu.Lock()
	s.dbs++
	name := fmt.Sprintf("test%d", s.dbs)
	s.mu.Unlock()
	s.Exec(t, "postgres", "CREATE DATABASE "+name)
	return s.DSN(name, Superuser)
}

// Exec runs SQL statements in database db as the superuser.
func (s *Server) Exec(t testing.TB, db string, sql ...string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, s.DSN(db, Superuser))
	if err != nil {
		t.Fatalf("pgtest: connecting to %s: %v", db, err)
	}
	defer conn.Close(ctx)
	for _, q := range sql {
		if _, err := conn.Exec(ctx, q); err != nil {
			t.Fatalf("pgtest: %s: %v", q, err)
		}
	}
}

// LogTail is the end of the server's log.
func (s *Server) LogTail() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.logTail()
}

// logTail is LogTail under s.mu.
func (s *Server) logTail() string {
	b, err := os.ReadFile(s.log())
	if err != nil {
		return ""
	}
	const n = 4096
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return "server log (end):\n" + string(b)
}

// cleanup stops the server at once and deletes everything it wrote.
func (s *Server) cleanup() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.t.Failed() {
		s.t.Log(s.logTail())
	}
	if err := s.stop(true); err != nil {
		s.t.Errorf("pgtest: stopping the server: %v", err)
		s.killPostmaster()
	}
	if err := os.RemoveAll(s.root); err != nil {
		s.t.Errorf("pgtest: %v", err)
	}
}

// killPostmaster is the last resort when pg_ctl could not stop it.
func (s *Server) killPostmaster() {
	b, err := os.ReadFile(filepath.Join(s.data(), "postmaster.pid"))
	if err != nil {
		return
	}
	line, _, _ := strings.Cut(string(b), "\n")
	if pid, err := strconv.Atoi(strings.TrimSpace(line)); err == nil && pid > 1 {
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
}
