package server_test

import (
	"context"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tunnel-dev/tunnel/internal/relaytest"
	"github.com/tunnel-dev/tunnel/internal/testutil"
	"github.com/tunnel-dev/tunnel/relay/client"
	"github.com/tunnel-dev/tunnel/relay/proto"
	"github.com/tunnel-dev/tunnel/relay/queue"
	"github.com/tunnel-dev/tunnel/relay/store"
)

// deafConn drops every datagram it receives while deaf is set: the
// worker's side of a path that died after relay wrote its answer.
type deafConn struct {
	net.PacketConn
	deaf *atomic.Bool
}

func (d deafConn) ReadFrom(b []byte) (int, net.Addr, error) {
	for {
		n, from, err := d.PacketConn.ReadFrom(b)
		if err != nil || !d.deaf.Load() {
			return n, from, err
		}
	}
}

// A Lease answer that relay wrote but the worker never read (its
// connection died) is undone at the worker's next call of the same
// session, over a new connection: the job comes again at attempt 1, not
// after its lease expires. Without a session the job stays leased.
func TestLostLeaseAnswerIsUndone(t *testing.T) {
	t.Setenv("QUIC_GO_DISABLE_RECEIVE_BUFFER_WARNING", "true")
	for _, tc := range []struct {
		name    string
		session bool
	}{
		{"with a session", true},
		{"without a session", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			id := testutil.Identity(t, "bunny")
			h := startRelay(t, relaytest.Options{Queue: queue.Options{DefaultLease: time.Minute}}, bunny(id))
			jobID := h.Enqueue(queue.NewJob{Queue: "default"})[0]
			upc, err := net.ListenPacket("udp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			var deaf atomic.Bool
			first, err := h.DialOver(id, deafConn{upc, &deaf})
			if err != nil {
				t.Fatal(err)
			}
			var sess *client.LeaseSession
			if tc.session {
				sess = client.NewLeaseSession()
			}
			deaf.Store(true)
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			got, err := first.Lease(ctx, client.LeaseOptions{Session: sess})
			cancel()
			if err == nil {
				t.Fatalf("a lease whose answer cannot arrive: %+v; want an error", got)
			}
			testutil.Eventually(t, 5*time.Second, "relay to have written the answer", func() bool {
				return h.Metric("relay_calls_total", map[string]string{"call": "lease", "code": "OK"}) == 1
			})
			if j := h.Get(jobID); j.State != store.Leased || j.Attempt != 1 {
				t.Fatalf("after the lost answer the job is %s at attempt %d; want leased at 1", j.State, j.Attempt)
			}
			_ = first.Close()

			again := h.Dial(id)
			got, err = again.Lease(ctxT(t, 10*time.Second), client.LeaseOptions{Session: sess})
			if err != nil {
				t.Fatal(err)
			}
			lost := h.Metric("relay_lease_answers_lost_total", nil)
			if !tc.session {
				if len(got) != 0 || lost != 0 {
					t.Fatalf("without a session: leased %+v, %v counted lost; want nothing (the job waits for its lease)", got, lost)
				}
				return
			}
			if len(got) != 1 || got[0].ID != jobID || got[0].Lease.Attempt != 1 || lost != 1 {
				t.Fatalf("after reconnecting: leased %+v, %v counted lost; want %s again at attempt 1, 1 counted", got, lost, jobID)
			}
			// An answer read is not undone by the next call.
			more, err := again.Lease(ctxT(t, 10*time.Second), client.LeaseOptions{Session: sess})
			if err != nil || len(more) != 0 {
				t.Fatalf("the next call: %+v %v; want an empty answer", more, err)
			}
			if j := h.Get(jobID); j.State != store.Leased || j.Attempt != 1 || h.Metric("relay_lease_answers_lost_total", nil) != 1 {
				t.Fatalf("after the next call the job is %s at attempt %d; want still leased at 1", j.State, j.Attempt)
			}
			if _, err := again.Complete(ctxT(t, 10*time.Second), got[0].Lease, []byte("ok")); err != nil {
				t.Fatalf("completing the redelivered lease: %v", err)
			}
		})
	}
}

// A session that is malformed or numbers its calls out of order is
// refused with INVALID_ARGUMENT, counted, and leases nothing.
func TestBadLeaseSessionRefused(t *testing.T) {
	id := testutil.Identity(t, "bunny")
	h := startRelay(t, relaytest.Options{}, bunny(id))
	h.Enqueue(queue.NewJob{Queue: "default"})
	conn := rawConn(t, h, id)
	sess := make([]byte, 16)
	sess[0] = 7
	tests := []struct {
		name    string
		session []byte
		seq     uint64
		want    proto.Code
	}{
		{"short session", []byte{1, 2, 3}, 1, proto.Code_INVALID_ARGUMENT},
		{"seq 0", sess, 0, proto.Code_INVALID_ARGUMENT},
		{"seq 5", sess, 5, proto.Code_OK},
		{"seq 5 again", sess, 5, proto.Code_INVALID_ARGUMENT},
		{"seq 4", sess, 4, proto.Code_INVALID_ARGUMENT},
	}
	for _, tc := range tests {
		b, err := proto.AppendFrame(nil, &proto.Request{Version: proto.Version, Call: &proto.Request_Lease{Lease: &proto.LeaseRequest{
			MaxJobs: 1, Session: tc.session, Seq: tc.seq, Received: tc.seq - 1,
		}}}, 0)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := rawCall(t, conn, b)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if got := resp.GetError().GetCode(); got != tc.want {
			t.Errorf("%s: code %v (%s), want %v", tc.name, got, resp.GetError().GetMessage(), tc.want)
		}
		if tc.want != proto.Code_OK && len(resp.GetLease().GetJobs()) != 0 {
			t.Errorf("%s: a refused call leased %d jobs", tc.name, len(resp.GetLease().GetJobs()))
		}
	}
	if n := h.Metric("relay_refused_total", map[string]string{"reason": "invalid_argument"}); n != 4 {
		t.Errorf("invalid_argument = %v, want the 4 refusals counted", n)
	}
}
