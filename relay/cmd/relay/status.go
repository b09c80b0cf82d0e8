package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/tunnel-dev/tunnel/internal/admin"
	"github.com/tunnel-dev/tunnel/internal/buildinfo"
	"github.com/tunnel-dev/tunnel/internal/cli"
	"github.com/tunnel-dev/tunnel/relay/api"
	"github.com/tunnel-dev/tunnel/relay/pgqueue"
	"github.com/tunnel-dev/tunnel/relay/queue"
	"github.com/tunnel-dev/tunnel/relay/server"
	"github.com/tunnel-dev/tunnel/relay/store"
)

// relayStatus is GET /status on relay's admin endpoint: what this relay
// is and is doing.
type relayStatus struct {
	Version   string    `json:"version"`
	Revision  string    `json:"revision,omitempty"`
	StartedAt time.Time `json:"started_at"`
	Store     struct {
		Kind     string `json:"kind"`     // bbolt or postgres
		Location string `json:"location"` // the file, or the DSN without its password
		Ready    bool   `json:"ready"`
		Error    string `json:"error,omitempty"`
	} `json:"store"`
	// QUIC is the address workers connect to (--listen), API the
	// producer API's URL.
	QUIC string `json:"quic"`
	API  string `json:"api"`
	// Workers are this replica's worker connections, oldest first.
	Workers []workerConn `json:"workers"`
	// Queues are every queue's jobs, as relay queues shows them;
	// QueuesError says why they could not be read (the store is down).
	Queues      []api.QueueInfo `json:"queues"`
	QueuesError string          `json:"queues_error,omitempty"`
}

// workerConn is one connected worker.
type workerConn struct {
	Name    string    `json:"name"`
	Pin     string    `json:"pin"`
	Address string    `json:"address"`
	Since   time.Time `json:"since"`
	// Leases is how many jobs the worker (every connection of its name,
	// on every replica) holds; 0 while the store cannot be read.
	Leases int `json:"leases"`
}

// storeKind names the store and where it is, its password left out.
func storeKind(db, dsn string) (kind, location string) {
	if dsn != "" {
		return "postgres", pgqueue.RedactDSN(dsn)
	}
	return "bbolt", db
}

// statusSource is what relay's /status reads.
type statusSource struct {
	build     buildinfo.Info
	started   time.Time
	kind, loc string
	quic, api string
	q         queue.Backend
	storeErr  func() error
	conns     func() []server.Conn // the worker server's connections
}

func (s *statusSource) status(ctx context.Context) (any, error) {
	st := relayStatus{Version: s.build.Version, Revision: s.build.Revision, StartedAt: s.started, QUIC: s.quic, API: s.api}
	st.Store.Kind, st.Store.Location = s.kind, s.loc
	err := s.q.Ready()
	if err == nil {
		err = s.storeErr()
	}
	st.Store.Ready = err == nil
	if err != nil {
		st.Store.Error = err.Error()
	}
	// The status is most wanted when the store is down: what cannot be
	// read is said, not a reason to fail.
	held, err := leasesByWorker(ctx, s.q)
	if err == nil {
		st.Queues, err = api.Summarize(ctx, s.q, func(string) bool { return true })
	}
	if err != nil {
		st.QueuesError = err.Error()
	}
	for _, c := range s.conns() {
		st.Workers = append(st.Workers, workerConn{Name: c.Worker, Pin: c.Pin.String(), Address: c.Remote.String(), Since: c.Since.UTC()})
	}
	for i := range st.Workers {
		st.Workers[i].Leases = held[st.Workers[i].Name]
	}
	return st, nil
}

// leasesByWorker counts the leased jobs of each worker name.
func leasesByWorker(ctx context.Context, q queue.Backend) (map[string]int, error) {
	out := map[string]int{}
	f := store.Filter{State: store.Leased, Limit: 1000}
	for range 1000 { // a million leases at most
		jobs, next, err := q.List(ctx, f)
		if err != nil {
			return nil, fmt.Errorf("listing leased jobs: %w", err)
		}
		for _, j := range jobs {
			out[j.LeasedBy]++
		}
		if next == "" {
			break
		}
		f.After = next
	}
	return out, nil
}

// handler serves /status on the admin endpoint.
func (s *statusSource) handler() http.Handler { return admin.JSONFunc(s.status) }

type statusCmd struct {
	Admin string `default:"http://127.0.0.1:9090" placeholder:"URL" help:"relay's admin endpoint (relay serve --admin)."`
	JSON  bool   `help:"Print the status as JSON."`
}

func (c *statusCmd) Run(ctx context.Context, env cli.Env) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	base := admin.URL(c.Admin)
	var st relayStatus
	if err := admin.Get(ctx, base, "/status", &st); err != nil {
		if errors.Is(err, admin.ErrNothingListening) {
			return fmt.Errorf("%w: is relay serve running with --admin %s? Point at its admin endpoint with --admin URL ($RELAY_STATUS_ADMIN)", err, strings.TrimPrefix(base, "http://"))
		}
		return fmt.Errorf("reading relay's status: %w", err)
	}
	if st.Store.Kind == "" {
		return fmt.Errorf("%s/status is not relay's (it names no store): point --admin at relay serve's --admin", base)
	}
	if c.JSON {
		return printJSON(env.Stdout, st)
	}
	printRelayStatus(env, st, time.Now())
	return nil
}

// printRelayStatus writes relay's status: a header, its workers, and its
// queues as relay queues prints them.
func printRelayStatus(env cli.Env, st relayStatus, now time.Time) {
	w := env.Stdout
	version := st.Version
	if st.Revision != "" {
		version += " (" + shortRev(st.Revision) + ")"
	}
	fmt.Fprintf(w, "relay %s  up %s\n", version, now.Sub(st.StartedAt).Truncate(time.Second))
	store := "ready"
	if !st.Store.Ready {
		store = "NOT READY: " + st.Store.Error
	}
	fmt.Fprintf(w, "store: %s %s, %s\n", st.Store.Kind, st.Store.Location, store)
	fmt.Fprintf(w, "workers connect to udp %s; producers to %s\n\n", st.QUIC, st.API)
	if len(st.Workers) == 0 {
		fmt.Fprintln(w, "no worker connected")
	} else {
		printWorkers(w, st.Workers, now)
	}
	fmt.Fprintln(w)
	switch {
	case st.QueuesError != "":
		fmt.Fprintf(w, "queues unreadable: %s\n", st.QueuesError)
		return
	case len(st.Queues) == 0:
		fmt.Fprintln(w, "no queues yet")
		return
	}
	printQueues(env, st.Queues, now)
}

func printWorkers(w io.Writer, ws []workerConn, now time.Time) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "WORKER\tADDRESS\tCONNECTED\tLEASES\tPIN")
	for _, c := range ws {
		fmt.Fprintf(tw, "%s\t%s\t%s ago\t%d\t%s\n", c.Name, c.Address, max(now.Sub(c.Since), 0).Truncate(time.Second), c.Leases, c.Pin)
	}
	_ = tw.Flush()
}

// shortRev cuts a commit hash to 12 characters, keeping a -dirty mark.
func shortRev(rev string) string {
	hash, dirty, _ := strings.Cut(rev, "-")
	if len(hash) > 12 {
		hash = hash[:12]
	}
	if dirty != "" {
		return hash + "-" + dirty
	}
	return hash
}
