// Package worker is bunny's engine: it holds a QUIC connection to relay
// (redialling with jittered exponential backoff), leases jobs from its
// queues with bounded concurrency, runs each through its queue's handler,
// heartbeats every lease it holds, and returns each result until relay
// answers definitively.
//
//	w, err := worker.New(worker.Options{
//		Addr: "127.0.0.1:7443", Identity: id, RelayPin: pin,
//		Handlers:    map[string]handler.Handler{"default": &handler.Exec{…}},
//		Concurrency: 4,
//	})
//	err = w.Run(ctx) // until ctx ends, then drains
//
// Run's context is the stop signal (SIGTERM in bunny run): leasing stops
// at once, running jobs get ShutdownGrace to finish, those still running
// are then stopped and failed back to relay for prompt redelivery, and Run
// returns once every lease is settled (or SettleTimeout passes, when relay
// is unreachable: relay redelivers those jobs when their leases expire).
//
// Lease state from heartbeats is honoured: CancelRequested stops the
// handler and fails the job (relay marks it cancelled); Lost stops the
// handler and drops the job without a word to relay. A result whose
// connection dropped is held and sent over the next connection: leases
// belong to the worker's name, not to a connection, and relay keeps a
// lease valid across its own restarts. Nothing is silently dropped: a
// result relay refuses (LEASE_LOST) belongs to a job relay has already
// redelivered or settled.
package worker
