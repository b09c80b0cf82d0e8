package server_test

import (
	"context"
	"testing"
	"time"

	"github.com/tunnel-dev/tunnel/internal/relaytest"
)

// The tests run relay with internal/relaytest, which imports this package:
// so they are an external test package.

// startRelay runs a relay (store, queue, workers-file watcher, server) on
// loopback UDP with the workers ws, until the test ends.
func startRelay(t testing.TB, opts relaytest.Options, ws ...relaytest.Worker) *relaytest.Relay {
	t.Helper()
	opts.Workers = ws
	return relaytest.Start(t, opts)
}

// ctxT is a context that ends after d or with the test.
func ctxT(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}
