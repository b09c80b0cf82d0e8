package pgqueue

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// migrations are the schema's versions, in order: version i+1 is
// migrations[i]. Never edit one that has shipped; add another.
var migrations = []string{
	// 1: the jobs table. The lease deadline is in no index, so a heartbeat
	// is a HOT update; fillfactor leaves room for those on the page.
	`CREATE TABLE relay_jobs (
		id               text PRIMARY KEY,
		queue            text NOT NULL,
		payload          bytea NOT NULL,
		state            text NOT NULL,
		attempt          integer NOT NULL DEFAULT 0,
		max_attempts     integer NOT NULL,
		lease_ms         bigint NOT NULL,
		idempotency_key  text,
		run_after        timestamptz NOT NULL,
		created_at       timestamptz NOT NULL,
		updated_at       timestamptz NOT NULL,
		lease_token      bytea,
		leased_by        text NOT NULL DEFAULT '',
		leased_at        timestamptz,
		lease_deadline   timestamptz,
		lease_end        text NOT NULL DEFAULT '',
		cancel_requested boolean NOT NULL DEFAULT false,
		result           bytea,
		last_error       text NOT NULL DEFAULT '',
		finished_at      timestamptz
	) WITH (fillfactor = 80);
	CREATE INDEX relay_jobs_ready ON relay_jobs (queue, run_after, id) WHERE state IN ('queued', 'retrying');
	CREATE INDEX relay_jobs_leased ON relay_jobs (leased_by) WHERE state = 'leased';
	CREATE UNIQUE INDEX relay_jobs_key ON relay_jobs (queue, idempotency_key) WHERE idempotency_key IS NOT NULL;
	CREATE INDEX relay_jobs_list ON relay_jobs (queue, state, id);
	CREATE INDEX relay_jobs_state ON relay_jobs (state, id);`,
	// 2: paused queues, whose jobs no replica leases.
	`CREATE TABLE relay_paused_queues (
		queue     text PRIMARY KEY,
		paused_at timestamptz NOT NULL DEFAULT now()
	);`,
}

// SchemaVersion is the schema this binary writes.
func SchemaVersion() int { return len(migrations) }

// ErrSchemaNewer: the database was migrated by a newer relay.
var ErrSchemaNewer = errors.New("the database schema is newer than this relay")

// migrateLock names the transaction-scoped advisory lock migrations hold.
const migrateLock = 0x72656c6179 // "relay"

// Migrate brings the schema up to SchemaVersion and returns the versions
// it applied. Everything happens in one transaction under an advisory
// lock released at its end, so replicas starting together apply each
// migration once; a failed migration leaves the schema as it was.
func Migrate(ctx context.Context, pool *pgxpool.Pool) (from, to int, err error) {
	err = pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, int64(migrateLock)); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `CREATE TABLE IF NOT EXISTS relay_schema_migrations (
			version    integer PRIMARY KEY,
			applied_at timestamptz NOT NULL DEFAULT now())`); err != nil {
			return err
		}
		if err := tx.QueryRow(ctx, `SELECT coalesce(max(version), 0) FROM relay_schema_migrations`).Scan(&from); err != nil {
			return err
		}
		to = from
		if from > len(migrations) {
			return fmt.Errorf("%w: it is at version %d, this relay knows up to %d; run a relay at least as new as the one that migrated it", ErrSchemaNewer, from, len(migrations))
		}
		for v := from + 1; v <= len(migrations); v++ {
			if _, err := tx.Exec(ctx, migrations[v-1]); err != nil {
				return fmt.Errorf("schema migration %d: %w", v, err)
			}
			if _, err := tx.Exec(ctx, `INSERT INTO relay_schema_migrations (version) VALUES ($1)`, v); err != nil {
				return err
			}
			to = v
		}
		return nil
	})
	if err != nil {
		return from, from, fmt.Errorf("migrating the database schema: %w", err)
	}
	return from, to, nil
}

// checkSchema fails unless the schema is at SchemaVersion.
func checkSchema(ctx context.Context, pool *pgxpool.Pool) error {
	var v int
	err := pool.QueryRow(ctx, `SELECT coalesce(max(version), 0) FROM relay_schema_migrations`).Scan(&v)
	if err != nil {
		return fmt.Errorf("reading the schema version (run relay migrate first): %w", err)
	}
	switch {
	case v > len(migrations):
		return fmt.Errorf("%w: it is at version %d, this relay knows up to %d; run a relay at least as new as the one that migrated it", ErrSchemaNewer, v, len(migrations))
	case v < len(migrations):
		return fmt.Errorf("the database schema is at version %d, this relay needs %d: run relay migrate", v, len(migrations))
	}
	return nil
}
