package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/tunnel-dev/tunnel/relay/api"
	"github.com/tunnel-dev/tunnel/relay/client"
)

// relay filled to --max-live-jobs or --max-live-bytes answers the next
// enqueue with 429 queue_full, loses nothing it accepted (across a
// SIGKILL too), and takes work again once a job is settled.
func TestLiveLimits(t *testing.T) {
	for _, tt := range []struct {
		name         string
		flags        []string
		accepted     int // 100-byte jobs that fit
		payloadBytes int
	}{
		{"jobs", []string{"--max-live-jobs", "30"}, 30, 100},
		{"bytes", []string{"--max-live-bytes", "2500"}, 25, 100},
	} {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			s := newSetup(t)
			p := startRelay(t, s, tt.flags...)
			c := p.api(s)
			payload := bytes.Repeat([]byte("p"), tt.payloadBytes)
			accepted := map[string]bool{}
			// Fill it in batches of 7; the batch that does not fit is
			// refused whole.
			for len(accepted) < tt.accepted {
				batch := make([]api.JobRequest, min(7, tt.accepted-len(accepted)))
				for i := range batch {
					batch[i] = api.JobRequest{Queue: "default", Payload: payload}
				}
				jobs, err := c.EnqueueBatch(ctx, batch)
				if err != nil {
					t.Fatalf("after %d accepted jobs: %v", len(accepted), err)
				}
				for _, j := range jobs {
					accepted[j.ID] = true
				}
			}
			full := func(p *proc) {
				t.Helper()
				_, err := p.api(s).Enqueue(ctx, api.JobRequest{Queue: "default", Payload: payload})
				var ae *api.Error
				if !errors.As(err, &ae) || ae.Status != http.StatusTooManyRequests || ae.Code != "queue_full" {
					t.Fatalf("enqueue past the limit: %v; want 429 queue_full", err)
				}
			}
			full(p)
			check := func(p *proc) {
				t.Helper()
				res, err := p.api(s).List(ctx, api.ListOptions{Queue: "default", Limit: 1000})
				if err != nil {
					t.Fatal(err)
				}
				got := map[string]bool{}
				for _, j := range res.Jobs {
					if !bytes.Equal(j.Payload, payload) {
						t.Fatalf("job %s: payload %q", j.ID, j.Payload)
					}
					got[j.ID] = true
				}
				if fmt.Sprint(got) != fmt.Sprint(accepted) {
					t.Fatalf("relay holds %d jobs, accepted %d: %v vs %v", len(got), len(accepted), got, accepted)
				}
			}
			check(p)

			p.kill()
			p = startRelay(t, s, tt.flags...)
			check(p)
			full(p)

			// Settling one job makes room for one.
			cl, err := p.dial(ctx, s, s.bunny)
			if err != nil {
				t.Fatal(err)
			}
			defer cl.Close()
			jobs, err := cl.Lease(ctx, client.LeaseOptions{Max: 1, Wait: time.Second})
			if err != nil || len(jobs) != 1 {
				t.Fatalf("lease: %v %v", jobs, err)
			}
			if _, err := cl.Complete(ctx, jobs[0].Lease, []byte("ok")); err != nil {
				t.Fatal(err)
			}
			if _, err := p.api(s).Enqueue(ctx, api.JobRequest{Queue: "default", Payload: payload}); err != nil {
				t.Fatalf("enqueue after a job finished: %v", err)
			}
			full(p)
		})
	}
}
