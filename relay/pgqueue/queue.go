package pgqueue

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/tunnel-dev/tunnel/relay/queue"
	"github.com/tunnel-dev/tunnel/relay/store"
)

// Options configure a Queue. Zero values take the defaults named.
type Options struct {
	// DSN is the database to use, as a postgres:// URL or key=value
	// string. It holds a password: it is never logged.
	DSN string
	// Queue holds the settings both backends share (lease, attempts,
	// caps, backoff, waits, graces, leases per worker, live-job and
	// live-byte limits); its Store and backlog limit do not apply: the
	// database holds the jobs. The live limits are checked against counts
	// refreshed every CountsInterval, so across replicas they are
	// approximate.
	Queue      queue.Options
	Logger     *slog.Logger
	Registerer prometheus.Registerer

	// NoMigrate only checks the schema version at Open instead of
	// migrating (relay migrate has done it).
	NoMigrate bool
	// MaxConns bounds the connection pool (8).
	MaxConns int32
	// PollInterval is how often a parked long poll looks for work when no
	// wakeup came (1s).
	PollInterval time.Duration
	// ExpiryInterval is how often this replica expires overdue leases
	// (500ms).
	ExpiryInterval time.Duration
	// HealthInterval is how often the connection is checked (1s).
	HealthInterval time.Duration
	// CountsInterval is how often Counts is refreshed (5s).
	CountsInterval time.Duration
	// Retain is how long succeeded, dead and cancelled jobs are kept
	// before every replica's pruning deletes them (0: kept forever).
	Retain time.Duration
	// PruneInterval is how often this replica prunes (1m).
	PruneInterval time.Duration
}

func (o *Options) setDefaults() {
	o.Queue.SetDefaults()
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.MaxConns <= 0 {
		o.MaxConns = 8
	}
	if o.PollInterval <= 0 {
		o.PollInterval = time.Second
	}
	if o.ExpiryInterval <= 0 {
		o.ExpiryInterval = 500 * time.Millisecond
	}
	if o.HealthInterval <= 0 {
		o.HealthInterval = time.Second
	}
	if o.CountsInterval <= 0 {
		o.CountsInterval = 5 * time.Second
	}
	if o.PruneInterval <= 0 {
		o.PruneInterval = time.Minute
	}
}

// Queue is the job state machine on PostgreSQL. Its methods are safe for
// concurrent use, and any number of Queues (relay replicas) may share one
// database.
type Queue struct {
	opts   Options
	pool   *pgxpool.Pool
	log    *slog.Logger
	secret string // the DSN's password, cut from every error
	ids    queue.IDs
	wake   *wakeups
	qof    queueOf
	pend   *pending

	rateCache rateCache // for Rates (rate.go)

	ctx    context.Context // ends at Close
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu           sync.Mutex
	closed       bool
	healthErr    error     // non-nil while the database is unreachable
	healthySince time.Time // when the connection last came (back)
	counts       map[store.QueueState]int
	live         live
}

// Errors Open returns, for the command to name what to fix.
var (
	ErrBadDSN      = errors.New("the PostgreSQL DSN does not parse")
	ErrUnreachable = errors.New("the database is unreachable")
	ErrPermission  = errors.New("the database role lacks a privilege")
)

// Open connects, migrates the schema (or checks it with NoMigrate) and
// starts the replica's background work: expiry, wakeups, health checks.
func Open(ctx context.Context, opts Options) (*Queue, error) {
	opts.setDefaults()
	pool, secret, err := Connect(ctx, opts.DSN, opts.MaxConns)
	if err != nil {
		return nil, err
	}

	if opts.NoMigrate {
		err = checkSchema(ctx, pool)
	} else {
		_, _, err = Migrate(ctx, pool)
	}
	if err != nil {
		pool.Close()
		return nil, Classify(redact(err, secret))
	}
	q := &Queue{
		opts:         opts,
		pool:         pool,
		log:          opts.Logger,
		secret:       secret,
		wake:         newWakeups(),
		pend:         newPending(),
		healthySince: time.Now(),
		counts:       map[store.QueueState]int{},
	}
	q.qof.init()
	q.ctx, q.cancel = context.WithCancel(context.Background())
	if err := q.refreshCounts(ctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("opening the PostgreSQL queue: %w", err)
	}
	if err := q.registerMetrics(opts.Registerer); err != nil {
		pool.Close()
		return nil, err
	}
	q.start(1, q.flusher)
	q.start(1, func() { q.every(q.opts.ExpiryInterval, q.expireOnce) })
	q.start(1, func() { q.every(q.opts.HealthInterval, q.checkHealth) })
	q.start(1, func() { q.every(q.opts.CountsInterval, q.countOnce) })
	if q.opts.Retain > 0 {
		q.start(1, func() { q.every(q.opts.PruneInterval, func() { q.pruneOnce() }) })
	}
	q.start(1, q.runListen)
	q.start(1, q.runNotify)
	return q, nil
}

func (q *Queue) start(n int, fn func()) {
	for range n {
		q.wg.Add(1)
		go func() { defer q.wg.Done(); fn() }()
	}
}

// Connect opens a pool on dsn and checks that the database answers. It
// returns the DSN's password so callers can cut it from errors.
func Connect(ctx context.Context, dsn string, maxConns int32) (*pgxpool.Pool, string, error) {
	secret := dsnPassword(dsn)
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		return nil, secret, fmt.Errorf("%w: %v", ErrBadDSN, redact(err, secret))
	}
	if cfg.ConnConfig.ConnectTimeout == 0 {
		cfg.ConnConfig.ConnectTimeout = 5 * time.Second
	}
	if maxConns > 0 {
		cfg.MaxConns = maxConns
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, secret, fmt.Errorf("%w: %v", ErrBadDSN, redact(err, secret))
	}
	pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := pool.Ping(pctx); err != nil {
		pool.Close()
		return nil, secret, Classify(redact(err, secret))
	}
	return pool, secret, nil
}

// Classify marks an error from the database with what the operator must
// fix: a privilege, the login, or reachability.
func Classify(err error) error {
	var pe *pgconn.PgError
	switch {
	case errors.Is(err, ErrSchemaNewer), errors.Is(err, ErrBadDSN):
		return err
	case errors.As(err, &pe) && pe.Code == "42501":
		return fmt.Errorf("%w (grant it, or use the role that owns relay's tables): %v", ErrPermission, err)
	case errors.As(err, &pe) && (pe.Code == "28P01" || pe.Code == "28000"):
		return fmt.Errorf("the database refused the login (check the DSN's user and password): %v", err)
	case errors.As(err, &pe) && pe.Code == "3D000":
		return fmt.Errorf("the database named in the DSN does not exist (create it first): %v", err)
	case errors.As(err, &pe):
		return err
	}
	return fmt.Errorf("%w (check the DSN's host and port, and that PostgreSQL is running): %v", ErrUnreachable, err)
}

// Close stops the replica's background work and closes its connections.
// Parked long polls return empty; later calls fail with queue.ErrClosed.
func (q *Queue) Close() error {
	q.mu.Lock()
	if q.closed {
		q.mu.Unlock()
		return nil
	}
	q.closed = true
	q.mu.Unlock()
	q.cancel()
	q.wake.closeAll()
	q.wg.Wait()
	q.pool.Close()
	return nil
}

// Ready is nil while the database answers.
func (q *Queue) Ready() error {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.usable()
}

func (q *Queue) usable() error {
	if q.closed {
		return queue.ErrClosed
	}
	return q.healthErr
}

func (q *Queue) check(what string) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	if err := q.usable(); err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	return nil
}

// dbErr turns an error from a statement into the caller's: a lost
// connection makes the replica unready and reads as overloaded (retry,
// perhaps on another replica); the password never appears.
func (q *Queue) dbErr(ctx context.Context, what string, err error) error {
	if ctx.Err() != nil {
		return fmt.Errorf("%s: %w", what, ctx.Err())
	}
	err = redact(err, q.secret)
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return fmt.Errorf("%s: %w", what, err)
	}
	if q.ctx.Err() != nil {
		return fmt.Errorf("%s: %w", what, queue.ErrClosed)
	}
	q.setUnhealthy(err)
	return fmt.Errorf("%s: %w: the database connection failed: %v", what, queue.ErrOverloaded, err)
}

func (q *Queue) setUnhealthy(err error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.healthErr == nil {
		q.healthErr = fmt.Errorf("%w: the database is unreachable: %v", queue.ErrOverloaded, err)
		q.log.Error("database unreachable; refusing work until it is back", "err", err)
		// The pool's other connections died with this one (a restart, a
		// failover): drop them all, or each would fail one call later.
		q.pool.Reset()
	}
}

// every runs fn every d until Close.
func (q *Queue) every(d time.Duration, fn func()) {
	t := time.NewTicker(d)
	defer t.Stop()
	for {
		select {
		case <-q.ctx.Done():
			return
		case <-t.C:
		}
		fn()
	}
}

// checkHealth pings the database; when it answers again after an outage
// the replica is ready again, and its expiry waits a lease duration.
func (q *Queue) checkHealth() {
	ctx, cancel := context.WithTimeout(q.ctx, 2*q.opts.HealthInterval+time.Second)
	err := q.pool.Ping(ctx)
	cancel()
	if q.ctx.Err() != nil {
		return
	}
	if err != nil {
		q.setUnhealthy(redact(err, q.secret))
		return
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.healthErr != nil {
		q.healthErr = nil
		q.healthySince = time.Now()
		q.log.Info("database reachable again; expiring leases only after each job's lease duration")
	}
}

// connectedFor is how long the replica has been connected without a
// failure, zero while it is not.
func (q *Queue) connectedFor() time.Duration {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.healthErr != nil {
		return 0
	}
	return time.Since(q.healthySince)
}

// redact cuts secret from err's text.
func redact(err error, secret string) error {
	if err == nil || secret == "" || !strings.Contains(err.Error(), secret) {
		return err
	}
	return redacted{msg: strings.ReplaceAll(err.Error(), secret, "REDACTED"), err: err}
}

type redacted struct {
	msg string
	err error
}

func (r redacted) Error() string { return r.msg }

// Unwrap keeps errors.Is and errors.As working on the original error.
func (r redacted) Unwrap() error { return r.err }

// dsnPassword finds the password in a URL or key=value DSN.
func dsnPassword(dsn string) string {
	if rest, ok := cutScheme(dsn); ok {
		if u, err := url.Parse(dsn); err == nil {
			if p, ok := u.User.Password(); ok {
				return p
			}
			return u.Query().Get("password")
		}
		// A URL that does not parse may still hold a password: take what
		// is between user: and the last @ of the authority.
		auth, _, _ := strings.Cut(rest, "/")
		if at := strings.LastIndex(auth, "@"); at >= 0 {
			if _, p, ok := strings.Cut(auth[:at], ":"); ok {
				return p
			}
		}
		return ""
	}
	for _, f := range strings.Fields(dsn) {
		if v, ok := strings.CutPrefix(f, "password="); ok {
			return strings.Trim(v, "'")
		}
	}
	return ""
}

// cutScheme strips a postgres:// or postgresql:// scheme.
func cutScheme(dsn string) (string, bool) {
	for _, p := range []string{"postgres://", "postgresql://"} {
		if rest, ok := strings.CutPrefix(dsn, p); ok {
			return rest, true
		}
	}
	return "", false
}

// RedactDSN is dsn with its password replaced, for logs.
func RedactDSN(dsn string) string {
	if p := dsnPassword(dsn); p != "" {
		return strings.ReplaceAll(dsn, p, "REDACTED")
	}
	return dsn
}
