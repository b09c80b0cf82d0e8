package main

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"github.com/tunnel-dev/tunnel/internal/fileread"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/quic-go/quic-go"

	"github.com/tunnel-dev/tunnel/internal/cli"
	"github.com/tunnel-dev/tunnel/relay/pgqueue"
	"github.com/tunnel-dev/tunnel/relay/queue"
	"github.com/tunnel-dev/tunnel/relay/store"
)

// storeFlags choose where jobs live; serve and migrate share them.
type storeFlags struct {
	Store     string `placeholder:"DSN" help:"Keep jobs in PostgreSQL (a postgres:// URL) instead of the --db file, so several relay replicas can share them. A password must not be on the command line (it shows in ps): use --store-file, $RELAY_STORE, PGPASSWORD or a pgpass file."`
	StoreFile string `type:"path" placeholder:"FILE" help:"A file holding the --store DSN (for a password; mode 0600 or 0400)."`
	NoMigrate bool   `help:"With --store, only check the schema version at start instead of migrating (for a role that may not change the schema; run relay migrate first)."`
}

// dsn is the PostgreSQL DSN asked for, or "" for the embedded store.
func (f *storeFlags) dsn() (string, error) {
	dsn := f.Store
	switch {
	case f.Store != "" && f.StoreFile != "":
		return "", cli.Usage(errors.New("--store and --store-file: give one, not both"))
	case f.StoreFile != "":
		fi, err := os.Stat(f.StoreFile)
		if err != nil {
			return "", cli.Usage(fmt.Errorf("--store-file: %w", err))
		}
		if fi.Mode().Perm()&0o077 != 0 {
			return "", cli.Usage(fmt.Errorf("--store-file %s: mode %04o lets others read the password; chmod 600 it", f.StoreFile, fi.Mode().Perm()))
		}
		b, err := fileread.Read(f.StoreFile, 64<<10)
		if err != nil {
			return "", cli.Usage(fmt.Errorf("--store-file: %w", err))
		}
		dsn = strings.TrimSpace(string(b))
		if dsn == "" {
			return "", cli.Usage(fmt.Errorf("--store-file %s: empty; want a postgres:// URL", f.StoreFile))
		}
	case dsn == "":
		return "", nil
	}
	if !strings.HasPrefix(dsn, "postgres://") && !strings.HasPrefix(dsn, "postgresql://") {
		return "", cli.Usage(fmt.Errorf("--store %s: want a postgres:// URL", pgqueue.RedactDSN(dsn)))
	}
	if f.Store != "" && onCommandLine(dsn) && pgqueue.RedactDSN(dsn) != dsn {
		return "", cli.Usage(errors.New("--store: the DSN holds a password, which anyone can read in ps; put it in --store-file or $RELAY_STORE instead"))
	}
	return dsn, nil
}

// onCommandLine reports whether s is one of the process's arguments.
func onCommandLine(s string) bool {
	for _, a := range os.Args[1:] {
		if strings.Contains(a, s) {
			return true
		}
	}
	return false
}

// storeError is one line saying what to fix about the database; a DSN
// that does not parse is a usage error.
func storeError(dsn string, err error) error {
	err = fmt.Errorf("--store %s: %w", pgqueue.RedactDSN(dsn), err)
	if errors.Is(err, pgqueue.ErrBadDSN) {
		return cli.Usage(err)
	}
	return err
}

type migrateCmd struct {
	storeFlags
}

// Run applies the schema migrations this relay knows and says where the
// schema is now.
func (c *migrateCmd) Run(ctx context.Context, env cli.Env) error {
	dsn, err := c.dsn()
	if err != nil {
		return err
	}
	if dsn == "" {
		return cli.Usage(errors.New("relay migrate: give --store, --store-file or $RELAY_STORE: only the PostgreSQL store has a schema to migrate"))
	}
	pool, _, err := pgqueue.Connect(ctx, dsn, 2)
	if err != nil {
		return storeError(dsn, err)
	}
	defer pool.Close()
	from, to, err := pgqueue.Migrate(ctx, pool)
	if err != nil {
		return storeError(dsn, pgqueue.Classify(err))
	}
	if from == to {
		fmt.Fprintf(env.Stdout, "schema at version %d: nothing to do\n", to)
	} else {
		fmt.Fprintf(env.Stdout, "schema migrated from version %d to %d\n", from, to)
	}
	return nil
}

// queueOptions are the queue settings both stores share.
func (c *serveCmd) queueOptions(log *slog.Logger, reg prometheus.Registerer) queue.Options {
	return queue.Options{
		Logger:             log,
		Registerer:         reg,
		DefaultLease:       c.LeaseDuration,
		DefaultMaxAttempts: c.MaxAttempts,
		MaxPayload:         c.MaxPayload,
		MaxResult:          c.MaxResult,
		Backoff:            queue.Backoff{Base: c.BackoffBase, Max: c.BackoffMax},
		MaxWait:            c.MaxWait,
		MaxLeasesPerWorker: c.MaxLeases,
		MaxLiveJobs:        c.MaxLiveJobs,
		MaxLiveBytes:       c.MaxLiveBytes,
	}
}

// openQueue opens the store asked for and its queue. storeErr reports a
// failure relay must exit on (a bbolt commit failed); a PostgreSQL replica
// that loses its database stays up, unready, until it is back.
func (c *serveCmd) openQueue(ctx context.Context, dsn string, log *slog.Logger, reg prometheus.Registerer) (q queue.Backend, storeErr func() error, closeStore func(), err error) {
	opts := c.queueOptions(log, reg)
	if dsn != "" {
		pq, err := pgqueue.Open(ctx, pgqueue.Options{DSN: dsn, Queue: opts, Logger: log, Registerer: reg, NoMigrate: c.NoMigrate, Retain: time.Duration(c.Retain)})
		if err != nil {
			return nil, nil, nil, storeError(dsn, err)
		}
		return pq, func() error { return nil }, func() { _ = pq.Close() }, nil
	}
	st, err := store.OpenBolt(store.BoltOptions{Path: c.DB, Logger: log, Registerer: reg})
	if err != nil {
		return nil, nil, nil, dbError(c.DB, err)
	}
	opts.Store = st
	opts.Retain = time.Duration(c.Retain)
	eq, err := queue.Open(ctx, opts)
	if err != nil {
		_ = st.Close()
		return nil, nil, nil, err
	}
	return eq, st.Err, func() { _ = eq.Close(); _ = st.Close() }, nil
}

// readResetKey derives the QUIC stateless-reset key from a shared secret
// file; "" keeps the server's default.
func readResetKey(path string) (*quic.StatelessResetKey, error) {
	if path == "" {
		return nil, nil
	}
	b, err := fileread.Read(path, 64<<10)
	if err != nil {
		return nil, cli.Usage(fmt.Errorf("--reset-key-file: %w", err))
	}
	if len(b) < 32 {
		return nil, cli.Usage(fmt.Errorf("--reset-key-file %s: %d bytes; want at least 32 random bytes (head -c 32 /dev/urandom)", path, len(b)))
	}
	k := quic.StatelessResetKey(sha256.Sum256(append([]byte("relay/1 shared stateless reset key\x00"), b...)))
	return &k, nil
}
