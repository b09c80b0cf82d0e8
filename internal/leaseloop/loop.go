package leaseloop

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/tunnel-dev/tunnel/relay/client"
)

// Run works jobs of queue on c with slots slots, completing each with its
// payload as the result, and calls finished for each job completed. It
// returns when ctx ends, or at the first error.
func Run(ctx context.Context, c *client.Client, queue string, slots int, finished func(client.Job)) error {
	free := make(chan struct{}, slots)
	for range slots {
		free <- struct{}{}
	}
	var wg sync.WaitGroup
	defer wg.Wait()
	errs := make(chan error, slots)
	sess := client.NewLeaseSession() // as bunny's lease loop has
	for ctx.Err() == nil {
		select {
		case <-free:
		case <-ctx.Done():
			return nil
		case err := <-errs:
			return err
		}
		n := 1
		for n < slots {
			select {
			case <-free:
				n++
				continue
			default:
			}
			break
		}
		jobs, err := c.Lease(ctx, client.LeaseOptions{Queues: []string{queue}, Max: n, Wait: time.Second, Session: sess})
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("leasing: %w", err)
		}
		for range n - len(jobs) {
			free <- struct{}{}
		}
		for _, job := range jobs {
			wg.Go(func() {
				defer func() { free <- struct{}{} }()
				if _, err := c.CompleteShared(ctx, job.Lease, job.Payload); err != nil {
					if ctx.Err() == nil {
						errs <- fmt.Errorf("completing: %w", err)
					}
					return
				}
				finished(job)
			})
		}
	}
	return nil
}
