package server_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/tunnel-dev/tunnel/internal/relaytest"
	"github.com/tunnel-dev/tunnel/internal/testutil"
	"github.com/tunnel-dev/tunnel/keys"
	"github.com/tunnel-dev/tunnel/relay/client"
	"github.com/tunnel-dev/tunnel/relay/proto"
	"github.com/tunnel-dev/tunnel/relay/queue"
	"github.com/tunnel-dev/tunnel/relay/store"
)

func bunny(ids ...keys.Identity) relaytest.Worker {
	return relaytest.Worker{Name: "bunny", IDs: ids, Queues: map[string]string{"default": relaytest.AllActions}}
}

func TestFullCycleOverQUIC(t *testing.T) {
	id := testutil.Identity(t, "bunny")
	h := startRelay(t, relaytest.Options{}, bunny(id))
	c := h.Dial(id)
	ctx := ctxT(t, 20*time.Second)

	jobID := h.Enqueue(queue.NewJob{Queue: "default", Payload: []byte("payload"), LeaseDuration: 5 * time.Second})[0]
	jobs, err := c.Lease(ctx, client.LeaseOptions{Max: 4, Wait: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if len(jobs) != 1 {
		t.Fatalf("leased %d jobs", len(jobs))
	}
	got := jobs[0]
	if got.ID != jobID || got.Queue != "default" || string(got.Payload) != "payload" || got.Lease.Attempt != 1 ||
		len(got.Lease.Token) != 16 || got.LeaseDuration != 5*time.Second || got.MaxAttempts != 25 {
		t.Fatalf("job: %+v", got)
	}
	if d := time.Until(got.Deadline); d < 4*time.Second || d > 5*time.Second {
		t.Fatalf("deadline in %s", d)
	}
	sts, err := c.Heartbeat(ctx, []client.Lease{got.Lease}, true)
	if err != nil || len(sts) != 1 || sts[0].State != client.Held || sts[0].JobID != jobID {
		t.Fatalf("heartbeat: %+v %v", sts, err)
	}
	dup, err := c.Complete(ctx, got.Lease, []byte("result"))
	if err != nil || dup {
		t.Fatalf("complete: %v %v", dup, err)
	}
	if s := h.Get(jobID); s.State != store.Succeeded || string(s.Result) != "result" {
		t.Fatalf("job after complete: %+v", s)
	}
	// Idempotent: the same answer, and the first result stays.
	dup, err = c.Complete(ctx, got.Lease, []byte("second"))
	if err != nil || !dup {
		t.Fatalf("repeated complete: %v %v", dup, err)
	}
	if s := h.Get(jobID); string(s.Result) != "result" {
		t.Fatalf("result became %q", s.Result)
	}
	// An empty long poll returns empty after its wait.
	start := time.Now()
	jobs, err = c.Lease(ctx, client.LeaseOptions{Wait: 200 * time.Millisecond})
	if err != nil || len(jobs) != 0 || time.Since(start) < 200*time.Millisecond {
		t.Fatalf("empty poll: %d jobs, %v, after %s", len(jobs), err, time.Since(start))
	}
	if n := h.Metric("relay_calls_total", map[string]string{"call": "complete", "code": "OK"}); n != 2 {
		t.Fatalf("relay_calls_total{complete,OK} = %v", n)
	}
}

// Several workers, each with its own connection, share a stream of jobs:
// every job completes exactly once.
func TestConcurrentWorkersOverQUIC(t *testing.T) {
	ids := []keys.Identity{testutil.Identity(t, "a"), testutil.Identity(t, "b")}
	h := startRelay(t, relaytest.Options{},
		relaytest.Worker{Name: "wa", IDs: ids[:1], Queues: map[string]string{"default": relaytest.AllActions}},
		relaytest.Worker{Name: "wb", IDs: ids[1:], Queues: map[string]string{"default": relaytest.AllActions}})
	const jobs, conns = 300, 8
	ctx := ctxT(t, 60*time.Second)
	var mu sync.Mutex
	done := map[string]int{}
	var wg sync.WaitGroup
	for i := 0; i < conns; i++ {
		c := h.Dial(ids[i%2])
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				got, err := c.Lease(ctx, client.LeaseOptions{Max: 4, Wait: 200 * time.Millisecond})
				if err != nil {
					t.Errorf("lease: %v", err)
					return
				}
				for _, j := range got {
					if _, err := c.Complete(ctx, j.Lease, j.Payload); err != nil {
						t.Errorf("complete: %v", err)
						return
					}
					mu.Lock()
					done[j.ID]++
					mu.Unlock()
				}
				mu.Lock()
				n := len(done)
				mu.Unlock()
				if n == jobs {
					return
				}
			}
		}()
	}
	for i := 0; i < jobs; i += 50 {
		batch := make([]queue.NewJob, 50)
		for k := range batch {
			batch[k] = queue.NewJob{Queue: "default", Payload: []byte(fmt.Sprint(i + k))}
		}
		h.Enqueue(batch...)
	}
	wg.Wait()
	if len(done) != jobs {
		t.Fatalf("%d jobs completed, want %d", len(done), jobs)
	}
	for id, n := range done {
		if n != 1 {
			t.Fatalf("job %s completed %d times", id, n)
		}
		if j := h.Get(id); j.State != store.Succeeded || j.Attempt != 1 {
			t.Fatalf("job %s: %+v", id, j)
		}
	}
}

func TestExpiryRedeliveryAndFencingOverQUIC(t *testing.T) {
	id1, id2 := testutil.Identity(t, "one"), testutil.Identity(t, "two")
	h := startRelay(t, relaytest.Options{Queue: queue.Options{Backoff: queue.Backoff{Base: 10 * time.Millisecond, Max: 10 * time.Millisecond}}},
		relaytest.Worker{Name: "one", IDs: []keys.Identity{id1}, Queues: map[string]string{"default": relaytest.AllActions}},
		relaytest.Worker{Name: "two", IDs: []keys.Identity{id2}, Queues: map[string]string{"default": relaytest.AllActions}})
	c1, c2 := h.Dial(id1), h.Dial(id2)
	ctx := ctxT(t, 20*time.Second)
	jobID := h.Enqueue(queue.NewJob{Queue: "default", LeaseDuration: time.Second})[0]
	first, err := c1.Lease(ctx, client.LeaseOptions{})
	if err != nil || len(first) != 1 {
		t.Fatalf("first lease: %v %v", first, err)
	}
	// Worker one goes quiet; after the lease expires, worker two gets the
	// job as attempt 2.
	second, err := c2.Lease(ctx, client.LeaseOptions{Wait: 5 * time.Second})
	if err != nil || len(second) != 1 || second[0].ID != jobID || second[0].Lease.Attempt != 2 {
		t.Fatalf("redelivery: %+v %v", second, err)
	}
	// Worker one's late answers are fenced off.
	if _, err := c1.Complete(ctx, first[0].Lease, []byte("late")); !errors.Is(err, client.ErrLeaseLost) {
		t.Fatalf("late complete: %v", err)
	}
	if _, err := c1.Fail(ctx, first[0].Lease, "late", client.FailOptions{}); !errors.Is(err, client.ErrLeaseLost) {
		t.Fatalf("late fail: %v", err)
	}
	sts, err := c1.Heartbeat(ctx, []client.Lease{first[0].Lease}, false)
	if err != nil || sts[0].State != client.Lost {
		t.Fatalf("late heartbeat: %+v %v", sts, err)
	}
	if _, err := c2.Complete(ctx, second[0].Lease, []byte("ok")); err != nil {
		t.Fatal(err)
	}
	if s := h.Get(jobID); s.State != store.Succeeded || string(s.Result) != "ok" {
		t.Fatalf("%+v", s)
	}
	if n := h.Metric("relay_lease_expirations_total", map[string]string{"queue": "default"}); n != 1 {
		t.Fatalf("expirations = %v", n)
	}
	if n := h.Metric("relay_redeliveries_total", map[string]string{"queue": "default"}); n != 1 {
		t.Fatalf("redeliveries = %v", n)
	}
}

func TestMaxAttemptsDeadOverQUIC(t *testing.T) {
	id := testutil.Identity(t, "bunny")
	h := startRelay(t, relaytest.Options{Queue: queue.Options{Backoff: queue.Backoff{Base: time.Millisecond, Max: time.Millisecond}}}, bunny(id))
	c := h.Dial(id)
	ctx := ctxT(t, 20*time.Second)
	jobID := h.Enqueue(queue.NewJob{Queue: "default", MaxAttempts: 3})[0]
	for attempt := 1; attempt <= 3; attempt++ {
		got, err := c.Lease(ctx, client.LeaseOptions{Wait: 5 * time.Second})
		if err != nil || len(got) != 1 || got[0].Lease.Attempt != uint32(attempt) {
			t.Fatalf("attempt %d: %+v %v", attempt, got, err)
		}
		res, err := c.Fail(ctx, got[0].Lease, fmt.Sprintf("boom %d", attempt), client.FailOptions{})
		want := "retrying"
		if attempt == 3 {
			want = "dead"
		}
		if err != nil || res.State != want {
			t.Fatalf("attempt %d: fail: %+v %v", attempt, res, err)
		}
		if want == "retrying" && res.NextAttempt.IsZero() {
			t.Fatal("no next attempt time")
		}
		again, err := c.Fail(ctx, got[0].Lease, "again", client.FailOptions{})
		if err != nil || !again.Duplicate || again.State != want {
			t.Fatalf("repeated fail: %+v %v", again, err)
		}
	}
	if s := h.Get(jobID); s.State != store.Dead || s.LastError != "boom 3" {
		t.Fatalf("%+v", s)
	}
	if got, err := c.Lease(ctx, client.LeaseOptions{Wait: 100 * time.Millisecond}); err != nil || len(got) != 0 {
		t.Fatalf("a dead job was leased: %+v %v", got, err)
	}
}

func TestCancelOverQUIC(t *testing.T) {
	id := testutil.Identity(t, "bunny")
	h := startRelay(t, relaytest.Options{}, bunny(id))
	c := h.Dial(id)
	ctx := ctxT(t, 20*time.Second)
	queuedID := h.Enqueue(queue.NewJob{Queue: "default"})[0]
	if _, err := h.Queue().Cancel(ctx, queuedID); err != nil {
		t.Fatal(err)
	}
	if got, _ := c.Lease(ctx, client.LeaseOptions{Wait: 100 * time.Millisecond}); len(got) != 0 {
		t.Fatal("a cancelled job was leased")
	}
	runningID := h.Enqueue(queue.NewJob{Queue: "default"})[0]
	got, err := c.Lease(ctx, client.LeaseOptions{})
	if err != nil || len(got) != 1 {
		t.Fatal(got, err)
	}
	if _, err := h.Queue().Cancel(ctx, runningID); err != nil {
		t.Fatal(err)
	}
	sts, err := c.Heartbeat(ctx, []client.Lease{got[0].Lease}, false)
	if err != nil || sts[0].State != client.CancelRequested {
		t.Fatalf("heartbeat after cancel: %+v %v", sts, err)
	}
	res, err := c.Fail(ctx, got[0].Lease, "stopped: cancelled", client.FailOptions{})
	if err != nil || res.State != "cancelled" {
		t.Fatalf("fail: %+v %v", res, err)
	}
}

func TestUnknownIdentityRefused(t *testing.T) {
	h := startRelay(t, relaytest.Options{}, bunny(testutil.Identity(t, "bunny")))
	stranger := testutil.Identity(t, "stranger")
	_, err := h.DialOver(stranger, nil)
	if !errors.Is(err, client.ErrUnauthorized) {
		t.Fatalf("dial with an unknown identity: %v, want ErrUnauthorized", err)
	}
	t.Logf("refused as: %v", err)
	if n := h.Metric("relay_refused_total", map[string]string{"reason": "unknown_identity"}); n < 1 {
		t.Fatalf("refusal not counted: %v", n)
	}
}

// A worker retrying with an unknown key is refused every time, counted
// every time, and logged once per interval with its pin, not once per
// retry.
func TestUnknownIdentityLoggedOncePerInterval(t *testing.T) {
	var log testutil.Buffer
	h := startRelay(t, relaytest.Options{Logger: log.Logger()}, bunny(testutil.Identity(t, "bunny")))
	stranger := testutil.Identity(t, "stranger")
	const tries = 5
	for range tries {
		if _, err := h.DialOver(stranger, nil); !errors.Is(err, client.ErrUnauthorized) {
			t.Fatalf("dial with an unknown identity: %v, want ErrUnauthorized", err)
		}
	}
	if n := h.Metric("relay_refused_total", map[string]string{"reason": "unknown_identity"}); n != tries {
		t.Fatalf("relay_refused_total{reason=unknown_identity} = %v after %d refusals", n, tries)
	}
	const line = "refused a worker: its key is not in the workers file"
	if n := log.Count(line); n != 1 {
		t.Fatalf("%q logged %d times for %d refusals, want once:\n%s", line, n, tries, log.String())
	}
	if !log.Contains(`pin="` + stranger.Pin().String() + `"`) {
		t.Fatalf("the line does not name the refused pin:\n%s", log.String())
	}
}

func TestWrongRelayPinRefused(t *testing.T) {
	id := testutil.Identity(t, "bunny")
	h := startRelay(t, relaytest.Options{}, bunny(id))
	ctx := ctxT(t, 10*time.Second)
	_, err := client.Dial(ctx, client.Options{Addr: h.Addr, Identity: id, RelayPin: testutil.Identity(t, "impostor").Pin()})
	if !errors.Is(err, client.ErrWrongRelay) {
		t.Fatalf("dial with the wrong relay pin: %v, want ErrWrongRelay", err)
	}
	t.Logf("refused as: %v", err)
}

// An identity is authorised per queue and per action.
func TestQueueAndActionAuthorisation(t *testing.T) {
	id := testutil.Identity(t, "narrow")
	h := startRelay(t, relaytest.Options{}, relaytest.Worker{Name: "narrow", IDs: []keys.Identity{id},
		Queues: map[string]string{"mine": relaytest.AllActions, "peek": "[lease, heartbeat]"}})
	c := h.Dial(id)
	ctx := ctxT(t, 20*time.Second)
	otherID := h.Enqueue(queue.NewJob{Queue: "theirs"})[0]

	_, err := c.Lease(ctx, client.LeaseOptions{Queues: []string{"theirs"}})
	if !errors.Is(err, client.ErrUnauthorized) {
		t.Fatalf("lease from a queue outside the identity's: %v", err)
	}
	t.Logf("refused as: %v", err)
	_, err = c.Complete(ctx, client.Lease{JobID: otherID, Attempt: 1, Token: make([]byte, 16)}, nil)
	if !errors.Is(err, client.ErrNotFound) {
		t.Fatalf("complete on a queue outside the identity's: %v", err)
	}
	// May lease from "peek" but not complete there.
	h.Enqueue(queue.NewJob{Queue: "peek"})
	got, err := c.Lease(ctx, client.LeaseOptions{Queues: []string{"peek"}})
	if err != nil || len(got) != 1 {
		t.Fatal(got, err)
	}
	if _, err := c.Complete(ctx, got[0].Lease, nil); !errors.Is(err, client.ErrUnauthorized) {
		t.Fatalf("complete without the action: %v", err)
	}
	// Empty Queues means every queue it may lease from.
	mineID := h.Enqueue(queue.NewJob{Queue: "mine"})[0]
	got, err = c.Lease(ctx, client.LeaseOptions{Max: 5})
	if err != nil || len(got) != 1 || got[0].ID != mineID {
		t.Fatalf("lease from the default queues: %+v %v", got, err)
	}
	if s := h.Get(otherID); s.State != store.Queued {
		t.Fatalf("the other queue's job changed: %+v", s)
	}
	if n := h.Metric("relay_refused_total", map[string]string{"reason": "unauthorized_queue"}); n != 1 {
		t.Fatalf("unauthorized_queue = %v", n)
	}
	if n := h.Metric("relay_refused_total", map[string]string{"reason": "unauthorized_action"}); n != 2 {
		t.Fatalf("unauthorized_action = %v", n)
	}
}

// A worker asking about a job of a queue it may do nothing on gets the
// answer a job id that does not exist gets, word for word: nothing tells
// it which queue the job is in, or that it exists.
func TestRefusalsDoNotRevealQueues(t *testing.T) {
	id := testutil.Identity(t, "narrow")
	h := startRelay(t, relaytest.Options{}, relaytest.Worker{Name: "narrow", IDs: []keys.Identity{id}, Queues: map[string]string{"a": relaytest.AllActions}})
	c := h.Dial(id)
	ctx := ctxT(t, 20*time.Second)
	secret := h.Enqueue(queue.NewJob{Queue: "b-secret-queue"})[0]
	const missing = "no-such-job-0000"
	wireErr := func(err error) *proto.Error {
		t.Helper()
		var pe *proto.Error
		if !errors.As(err, &pe) {
			t.Fatalf("not a relay refusal: %v", err)
		}
		return pe
	}
	lease := func(id string) client.Lease { return client.Lease{JobID: id, Attempt: 1, Token: make([]byte, 16)} }
	calls := map[string]func(id string) error{
		"complete": func(id string) error { _, err := c.Complete(ctx, lease(id), nil); return err },
		"fail":     func(id string) error { _, err := c.Fail(ctx, lease(id), "x", client.FailOptions{}); return err },
	}
	for name, call := range calls {
		hidden, absent := wireErr(call(secret)), wireErr(call(missing))
		// Each names the id it was asked about, and nothing else differs.
		if hidden.Code != absent.Code || strings.ReplaceAll(hidden.Message, secret, "ID") != strings.ReplaceAll(absent.Message, missing, "ID") {
			t.Errorf("%s: a job of another queue got %v %q, a missing job %v %q", name, hidden.Code, hidden.Message, absent.Code, absent.Message)
		}
		if strings.Contains(hidden.Message, "b-secret-queue") {
			t.Errorf("%s: the refusal names the queue: %q", name, hidden.Message)
		}
	}
	sts, err := c.Heartbeat(ctx, []client.Lease{lease(secret), lease(missing)}, false)
	if err != nil {
		t.Fatalf("heartbeat: %v", err)
	}
	if len(sts) != 2 || sts[0].State != sts[1].State || sts[0].State != client.Lost {
		t.Fatalf("heartbeat: %+v; want both lost alike", sts)
	}
	if s := h.Get(secret); s.State != store.Queued {
		t.Fatalf("the other queue's job changed: %+v", s)
	}
	if n := h.Metric("relay_refused_total", map[string]string{"reason": "unauthorized_action"}); n != 3 {
		t.Errorf("unauthorized_action = %v, want the 3 refusals counted", n)
	}
}

// rawConn is a bare QUIC connection to relay, to send what the client
// never would.
func rawConn(t *testing.T, h *relaytest.Relay, id keys.Identity) *quic.Conn {
	t.Helper()
	ctx := ctxT(t, 10*time.Second)
	conn, err := quic.DialAddr(ctx, h.Addr, proto.ClientTLS(id, h.ID.Pin()), proto.QUICOptions{}.Config(false))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.CloseWithError(0, "") })
	return conn
}

// rawCall writes b on a new stream and returns the answer or the error.
func rawCall(t *testing.T, conn *quic.Conn, b []byte) (*proto.Response, error) {
	t.Helper()
	str, err := conn.OpenStreamSync(ctxT(t, 5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	_ = str.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := str.Write(b); err != nil {
		return nil, err
	}
	_ = str.Close()
	var resp proto.Response
	if err := proto.ReadFrame(str, &resp, 0); err != nil {
		return nil, err
	}
	return &resp, nil
}

// Malformed and oversized frames reset their stream and nothing else.
func TestBadFramesResetOnlyTheirStream(t *testing.T) {
	id := testutil.Identity(t, "bunny")
	h := startRelay(t, relaytest.Options{}, bunny(id))
	conn := rawConn(t, h, id)
	good, err := proto.AppendFrame(nil, &proto.Request{Version: proto.Version, Call: &proto.Request_Lease{Lease: &proto.LeaseRequest{MaxJobs: 1}}}, 0)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		in   []byte
	}{
		{"oversized length", binary.AppendUvarint(nil, proto.MaxRequestFrame+1)},
		{"garbage body", []byte{4, 0xff, 0xff, 0xff, 0xff}},
		{"truncated", good[:len(good)-1]},
		{"overlong varint", bytes.Repeat([]byte{0x80}, 11)},
		{"bytes after the frame", append(append([]byte(nil), good...), 0)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := rawCall(t, conn, tt.in)
			var se *quic.StreamError
			if !errors.As(err, &se) || se.ErrorCode != proto.Code_BAD_FRAME.StreamCode() || !se.Remote {
				t.Fatalf("err = %v, want the stream reset by relay with BAD_FRAME", err)
			}
		})
	}
	// The connection still works.
	resp, err := rawCall(t, conn, good)
	if err != nil || resp.GetError() != nil || resp.GetLease() == nil {
		t.Fatalf("a good call after bad frames: %v %v", resp, err)
	}
	if n := h.Metric("relay_refused_total", map[string]string{"reason": "bad_frame"}); n != float64(len(tests)) {
		t.Fatalf("bad_frame = %v", n)
	}
}

func TestVersionAndEmptyCallRefused(t *testing.T) {
	id := testutil.Identity(t, "bunny")
	h := startRelay(t, relaytest.Options{}, bunny(id))
	conn := rawConn(t, h, id)
	tests := []struct {
		name string
		req  *proto.Request
		code proto.Code
	}{
		{"other version", &proto.Request{Version: 2, Call: &proto.Request_Lease{Lease: &proto.LeaseRequest{MaxJobs: 1}}}, proto.Code_VERSION},
		{"no call", &proto.Request{Version: proto.Version}, proto.Code_INVALID_ARGUMENT},
		{"zero max jobs", &proto.Request{Version: proto.Version, Call: &proto.Request_Lease{Lease: &proto.LeaseRequest{}}}, proto.Code_INVALID_ARGUMENT},
		{"complete without a job", &proto.Request{Version: proto.Version, Call: &proto.Request_Complete{Complete: &proto.CompleteRequest{}}}, proto.Code_INVALID_ARGUMENT},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := proto.AppendFrame(nil, tt.req, 0)
			if err != nil {
				t.Fatal(err)
			}
			resp, err := rawCall(t, conn, b)
			if err != nil || resp.GetError().GetCode() != tt.code || resp.GetError().GetMessage() == "" {
				t.Fatalf("resp %v err %v, want %s with a message", resp, err, tt.code)
			}
		})
	}
}

// Removing a pin closes its connections with CREDENTIALS_REVOKED; the
// worker's leases belong to its name and carry on over its new key.
func TestRevokedPinClosesConnectionAndLeasesSurvive(t *testing.T) {
	oldID, newID := testutil.Identity(t, "bunny-old"), testutil.Identity(t, "bunny-new")
	h := startRelay(t, relaytest.Options{}, bunny(oldID, newID))
	ctx := ctxT(t, 20*time.Second)
	oldC := h.Dial(oldID)
	h.Enqueue(queue.NewJob{Queue: "default"})
	got, err := oldC.Lease(ctx, client.LeaseOptions{})
	if err != nil || len(got) != 1 {
		t.Fatal(got, err)
	}
	newC := h.Dial(newID)

	h.SetWorkers(bunny(newID))
	select {
	case <-oldC.Done():
	case <-ctx.Done():
		t.Fatal("the revoked connection stayed open")
	}
	err = oldC.Err()
	if !errors.Is(err, client.ErrCredentialsRevoked) || !errors.Is(err, client.ErrConnectionLost) {
		t.Fatalf("revoked connection's error: %v", err)
	}
	t.Logf("revoked as: %v", err)
	if _, err := oldC.Heartbeat(ctx, []client.Lease{got[0].Lease}, false); !errors.Is(err, client.ErrConnectionLost) {
		t.Fatalf("call on the revoked connection: %v", err)
	}
	if _, err := h.DialOver(oldID, nil); !errors.Is(err, client.ErrUnauthorized) {
		t.Fatalf("redial with the revoked key: %v", err)
	}
	// The lease taken with the old key is the worker's: the new key
	// heartbeats and completes it.
	sts, err := newC.Heartbeat(ctx, []client.Lease{got[0].Lease}, false)
	if err != nil || sts[0].State != client.Held {
		t.Fatalf("heartbeat with the new key: %+v %v", sts, err)
	}
	if _, err := newC.Complete(ctx, got[0].Lease, []byte("done")); err != nil {
		t.Fatal(err)
	}
	if n := h.Metric("relay_refused_total", map[string]string{"reason": "credentials_revoked"}); n != 1 {
		t.Fatalf("credentials_revoked = %v", n)
	}
}

// A long poll the worker abandons leases nothing.
func TestAbandonedLongPollLeasesNothing(t *testing.T) {
	id := testutil.Identity(t, "bunny")
	h := startRelay(t, relaytest.Options{}, bunny(id))
	c := h.Dial(id)
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() {
		_, err := c.Lease(ctx, client.LeaseOptions{Wait: 30 * time.Second})
		errc <- err
	}()
	testutil.Eventually(t, 5*time.Second, "the poll to park", func() bool { return h.Metric("relay_lease_waiters", nil) == 1 })
	cancel()
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Fatalf("abandoned poll: %v", err)
	}
	testutil.Eventually(t, 5*time.Second, "relay to drop the poll", func() bool { return h.Metric("relay_lease_waiters", nil) == 0 })
	jobID := h.Enqueue(queue.NewJob{Queue: "default"})[0]
	got, err := c.Lease(ctxT(t, 10*time.Second), client.LeaseOptions{})
	if err != nil || len(got) != 1 || got[0].ID != jobID || got[0].Lease.Attempt != 1 {
		t.Fatalf("after an abandoned poll: %+v %v", got, err)
	}
}

// A long poll in flight when relay stops hears SHUTTING_DOWN.
func TestShutdownEndsLongPolls(t *testing.T) {
	id := testutil.Identity(t, "bunny")
	h := startRelay(t, relaytest.Options{}, bunny(id))
	c := h.Dial(id)
	errc := make(chan error, 1)
	go func() {
		_, err := c.Lease(ctxT(t, 30*time.Second), client.LeaseOptions{Wait: 30 * time.Second})
		errc <- err
	}()
	testutil.Eventually(t, 5*time.Second, "the poll to park", func() bool { return h.Metric("relay_lease_waiters", nil) == 1 })
	h.Stop()
	select {
	case err := <-errc:
		if !errors.Is(err, client.ErrShuttingDown) {
			t.Fatalf("poll during shutdown: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the long poll did not end")
	}
}

// onlyPacketConn hides everything but net.PacketConn, as a netstack UDP
// socket offers: QUIC runs without the kernel socket's extras.
type onlyPacketConn struct{ pc net.PacketConn }

func (o onlyPacketConn) ReadFrom(b []byte) (int, net.Addr, error)  { return o.pc.ReadFrom(b) }
func (o onlyPacketConn) WriteTo(b []byte, a net.Addr) (int, error) { return o.pc.WriteTo(b, a) }
func (o onlyPacketConn) Close() error                              { return o.pc.Close() }
func (o onlyPacketConn) LocalAddr() net.Addr                       { return o.pc.LocalAddr() }
func (o onlyPacketConn) SetDeadline(t time.Time) error             { return o.pc.SetDeadline(t) }
func (o onlyPacketConn) SetReadDeadline(t time.Time) error         { return o.pc.SetReadDeadline(t) }
func (o onlyPacketConn) SetWriteDeadline(t time.Time) error        { return o.pc.SetWriteDeadline(t) }

func TestServeAndDialOverPlainPacketConn(t *testing.T) {
	t.Setenv("QUIC_GO_DISABLE_RECEIVE_BUFFER_WARNING", "true")
	id := testutil.Identity(t, "bunny")
	h := startRelay(t, relaytest.Options{PacketConn: func(pc net.PacketConn) net.PacketConn { return onlyPacketConn{pc} }}, bunny(id))
	upc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = upc.Close() })
	c, err := h.DialOver(id, onlyPacketConn{upc})
	if err != nil {
		t.Fatal(err)
	}
	ctx := ctxT(t, 10*time.Second)
	h.Enqueue(queue.NewJob{Queue: "default", Payload: bytes.Repeat([]byte("x"), 64<<10)})
	got, err := c.Lease(ctx, client.LeaseOptions{})
	if err != nil || len(got) != 1 || len(got[0].Payload) != 64<<10 {
		t.Fatalf("lease over a plain PacketConn: %v", err)
	}
	if _, err := c.Complete(ctx, got[0].Lease, bytes.Repeat([]byte("y"), 64<<10)); err != nil {
		t.Fatal(err)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	// The client leaves a socket it was given open.
	if err := upc.SetReadDeadline(time.Now()); err != nil {
		t.Fatalf("the given PacketConn was closed: %v", err)
	}
	var buf [1]byte
	if _, _, err := upc.ReadFrom(buf[:]); errors.Is(err, net.ErrClosed) || err == io.EOF {
		t.Fatalf("the given PacketConn was closed: %v", err)
	}
}
