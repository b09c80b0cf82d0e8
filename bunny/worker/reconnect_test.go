package worker

import (
	"net/http/httptest"
	"strconv"
	"testing"
	"time"

	"github.com/tunnel-dev/tunnel/bunny/handler"
	"github.com/tunnel-dev/tunnel/internal/testutil"
	"github.com/tunnel-dev/tunnel/relay/queue"
	"github.com/tunnel-dev/tunnel/relay/store"
)

// A worker that only long-polls notices a relay killed and restarted (the
// same identity, so the same stateless-reset key) at its next liveness
// probe, and reconnects at once: without probes it sent only keep-alive
// PINGs, too small to be answered with a reset, and waited out the idle
// timeout or its long poll (17–20 s outliers). A job held across the
// restart keeps its lease: it belongs to the worker's name, not to the
// connection, so it completes at attempt 1.
func TestReconnectAfterRelayKill(t *testing.T) {
	f := &inFlight{hold: 2 * time.Second}
	srv := httptest.NewServer(f)
	defer srv.Close()
	e := setup(t, map[string]handler.Handler{"web": &handler.HTTP{URL: srv.URL, Timeout: 10 * time.Second, MaxOutput: 100}},
		func(o *Options) { o.LeaseWait = 20 * time.Second })
	e.run()
	testutil.Eventually(t, 10*time.Second, "the worker to connect", func() bool { return e.w.Ready() == nil })

	var figures []time.Duration
	for round := range 3 {
		// Round 0: idle, long-polling. Later rounds: one job running
		// across the restart.
		var ids []string
		if round > 0 {
			ids = e.relay.Enqueue(queue.NewJob{Queue: "web", Payload: []byte("r" + strconv.Itoa(round))})
			testutil.Eventually(t, 10*time.Second, "the job to start", func() bool { return f.now.Load() >= 1 })
		}
		before := val(e.w.m.reconnects)
		e.relay.Kill()
		time.Sleep(200 * time.Millisecond)
		e.relay.Start()
		restarted := time.Now()
		testutil.EventuallyEvery(t, 15*time.Second, 10*time.Millisecond, "the worker to reconnect", func() bool {
			return val(e.w.m.reconnects) > before && e.w.Ready() == nil
		})
		figures = append(figures, time.Since(restarted).Round(time.Millisecond))
		for _, j := range e.relay.WaitTerminal(20*time.Second, ids...) {
			if j.State != store.Succeeded || j.Attempt != 1 {
				t.Errorf("job %s: %s at attempt %d, want succeeded at attempt 1", j.ID, j.State, j.Attempt)
			}
		}
	}
	t.Logf("reconnected after relay restarts in %v (idle, then with a job held)", figures)
}
