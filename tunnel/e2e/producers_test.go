package e2e

import (
	"context"
	"errors"
	"net/http"
	"os"
	"testing"
	"time"

	"github.com/tunnel-dev/tunnel/internal/testutil"
	"github.com/tunnel-dev/tunnel/relay/api"
	"github.com/tunnel-dev/tunnel/relay/producers"
)

// TestClusterProducers: inside the eks namespace, over relay's HTTPS API
// on its pod address, a producer with no credentials and a producer
// allowed only on queue a can enqueue to, read, list or cancel nothing of
// queue b; removing a's token from the producers file refuses it with no
// restart.
func TestClusterProducers(t *testing.T) {
	c := startClusters(t)
	ctx := context.Background()
	tok, hash, err := producers.NewToken()
	if err != nil {
		t.Fatal(err)
	}
	before, err := os.ReadFile(c.producers)
	if err != nil {
		t.Fatal(err)
	}
	entry := producers.Entry("only-a", nil, []producers.TokenHash{hash}, map[string][]producers.Action{"a": producers.Actions()})
	writeFile(t, c.producers, string(before)+entry)
	onlyA, anon := c.producer(tok), c.producer("")
	testutil.EventuallyEvery(t, 10*time.Second, 100*time.Millisecond, "producer only-a accepted", func() bool {
		_, err := onlyA.List(ctx, api.ListOptions{Queue: "a"})
		return err == nil
	})
	// Queue b's jobs, from an administrator's entry (e2e may not: grant
	// it b for this).
	admTok, admHash, _ := producers.NewToken()
	writeFile(t, c.producers, string(before)+entry+producers.Entry("admin", nil, []producers.TokenHash{admHash}, map[string][]producers.Action{"b": producers.Actions()}))
	adm := c.producer(admTok)
	var b api.Job
	testutil.EventuallyEvery(t, 10*time.Second, 100*time.Millisecond, "admin accepted", func() bool {
		b, err = adm.Enqueue(ctx, api.JobRequest{Queue: "b", PayloadText: "b's secret"})
		return err == nil
	})
	status := func(err error) int {
		var ae *api.Error
		if errors.As(err, &ae) {
			return ae.Status
		}
		return 0
	}
	for name, tt := range map[string]struct {
		c              *api.Client
		enqueue, other int
	}{
		"no credentials": {anon, http.StatusUnauthorized, http.StatusUnauthorized},
		"only a":         {onlyA, http.StatusForbidden, http.StatusNotFound},
	} {
		if _, err := tt.c.Enqueue(ctx, api.JobRequest{Queue: "b"}); status(err) != tt.enqueue {
			t.Errorf("%s: enqueue to b: %v", name, err)
		}
		if _, err := tt.c.Get(ctx, b.ID); status(err) != tt.other {
			t.Errorf("%s: read b's job: %v", name, err)
		}
		if _, err := tt.c.Cancel(ctx, b.ID); status(err) != tt.other {
			t.Errorf("%s: cancel b's job: %v", name, err)
		}
		if _, err := tt.c.List(ctx, api.ListOptions{Queue: "b"}); status(err) != tt.enqueue {
			t.Errorf("%s: list b: %v", name, err)
		}
	}
	if j, err := adm.Get(ctx, b.ID); err != nil || j.State != "queued" {
		t.Fatalf("b's job afterwards: %+v %v", j, err)
	}
	if _, err := onlyA.Enqueue(ctx, api.JobRequest{Queue: "a"}); err != nil {
		t.Fatalf("only-a enqueues to a: %v", err)
	}
	writeFile(t, c.producers, string(before))
	testutil.EventuallyEvery(t, 10*time.Second, 100*time.Millisecond, "only-a's token refused after its removal", func() bool {
		_, err := onlyA.Enqueue(ctx, api.JobRequest{Queue: "a"})
		return status(err) == http.StatusUnauthorized
	})
}
