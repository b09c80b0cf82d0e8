package relaytest

import (
	"fmt"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/tunnel-dev/tunnel/keys"
)

// AllActions allows a worker everything on a queue.
const AllActions = "[lease, heartbeat, complete, fail]"

// Worker is one entry of relay's workers file.
type Worker struct {
	Name string
	IDs  []keys.Identity
	// Queues maps a queue to the worker's actions on it, in the file's
	// syntax: AllActions, or "[lease]", say.
	Queues map[string]string
}

// workersYAML is the workers file for Options.Worker and ws.
func (r *Relay) workersYAML(ws []Worker) string {
	if r.opts.Worker.Leaf != nil {
		w := Worker{Name: "bunny", IDs: []keys.Identity{r.opts.Worker}, Queues: map[string]string{}}
		for _, q := range r.opts.Queues {
			w.Queues[q] = AllActions
		}
		ws = append([]Worker{w}, ws...)
	}
	var b strings.Builder
	b.WriteString("workers:\n")
	for _, w := range ws {
		pins := make([]string, len(w.IDs))
		for i, id := range w.IDs {
			pins[i] = id.Pin().String()
		}
		fmt.Fprintf(&b, "  - name: %s\n    pins: [%s]\n    queues:\n", w.Name, strings.Join(pins, ", "))
		names := make([]string, 0, len(w.Queues))
		for q := range w.Queues {
			names = append(names, q)
		}
		sort.Strings(names)
		for _, q := range names {
			fmt.Fprintf(&b, "      %s: %s\n", q, w.Queues[q])
		}
	}
	return b.String()
}

func (r *Relay) writeWorkers(ws []Worker) error {
	if err := os.WriteFile(r.workers, []byte(r.workersYAML(ws)), 0o644); err != nil {
		return fmt.Errorf("writing the workers file: %w", err)
	}
	return nil
}

// SetWorkers rewrites the workers file (Options.Worker stays first) and
// waits until relay has reloaded it and closed the connections of keys it
// no longer lists.
func (r *Relay) SetWorkers(ws ...Worker) {
	r.helper()
	before := r.watcher.Config()
	if err := r.writeWorkers(ws); err != nil {
		r.fatalf("%v", err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for r.watcher.Config() == before {
		if time.Now().After(deadline) {
			r.fatalf("the workers file was not reloaded within 5s")
		}
		r.watcher.Check()
		time.Sleep(10 * time.Millisecond)
	}
}
