package client

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/tunnel-dev/tunnel/keys"
	"github.com/tunnel-dev/tunnel/relay/proto"
)

// Options configure Dial.
type Options struct {
	// Addr is relay's UDP address, host:port (through the tunnel: the
	// local gateway's forward port).
	Addr string
	// Addrs, instead of Addr, are several ways to one relay (the forward
	// ports of several gateways), in order: the connection uses one at a
	// time and moves to the next when the one in use goes silent for
	// PathTimeout, keeping the connection (see pathConn). Start is the
	// index to begin with (the one in use when the last connection
	// ended).
	Addrs []string
	Start int
	// PathTimeout: zero means DefaultPathTimeout.
	PathTimeout time.Duration
	// ProbeEvery is how often a liveness probe is sent (zero:
	// DefaultProbeEvery; negative: none); ProbeTimeout how long relay
	// may leave one unanswered before the connection is ended (zero:
	// DefaultProbeTimeout).
	ProbeEvery, ProbeTimeout time.Duration
	// Identity is the worker's QUIC identity (keys.LoadIdentity); relay
	// knows the worker by its pin.
	Identity keys.Identity
	// RelayPin is relay's identity pin; a server with another key is
	// refused before anything is sent.
	RelayPin keys.Pin
	// PacketConn, if set, is the socket to dial over (for example a
	// netstack UDP socket); the Client does not close it. Otherwise Dial
	// opens a UDP socket and Close closes it.
	PacketConn net.PacketConn
	// QUIC tunes the connection; the zero value fits the tunnel.
	QUIC   proto.QUICOptions
	Logger *slog.Logger
}

// Client is one QUIC connection to relay.
type Client struct {
	conn   *quic.Conn
	tr     *quic.Transport
	pc     net.PacketConn
	ownsPC bool
	once   sync.Once
	paths  *pathConn // with several addresses
	batch  batcher   // batch.go

	failMu  sync.Mutex
	failErr error // why the Client ended the connection itself
}

// Dial connects to relay and completes the handshake: relay's key is
// checked against RelayPin, and relay checks this identity's pin.
func Dial(ctx context.Context, opts Options) (*Client, error) {
	addrs := opts.Addrs
	switch {
	case len(addrs) == 0 && opts.Addr == "":
		return nil, errors.New("dialing relay: no address")
	case len(addrs) == 0:
		addrs = []string{opts.Addr}
	case opts.Addr != "":
		return nil, errors.New("dialing relay: give Addr or Addrs, not both")
	}
	if opts.Identity.Leaf == nil || opts.Identity.Certificate.PrivateKey == nil {
		return nil, errors.New("dialing relay: no identity (load one with keys.LoadIdentity)")
	}
	if opts.RelayPin == (keys.Pin{}) {
		return nil, errors.New("dialing relay: no relay pin")
	}
	if err := opts.QUIC.Validate(); err != nil {
		return nil, fmt.Errorf("dialing relay: %w", err)
	}
	if len(addrs) > 1 && opts.PacketConn != nil {
		return nil, errors.New("dialing relay: several addresses need a socket of the Client's own (no PacketConn)")
	}
	resolved, err := resolveAll(addrs)
	if err != nil {
		return nil, fmt.Errorf("dialing relay: %w", err)
	}
	raddr := resolved[0]
	c := &Client{pc: opts.PacketConn}
	if c.pc == nil {
		var lc net.ListenConfig
		network := "udp4"
		for _, a := range resolved {
			if a.IP.To4() == nil {
				network = "udp"
				if len(resolved) == 1 {
					network = "udp6"
				}
			}
		}
		c.pc, err = lc.ListenPacket(ctx, network, "")
		if err != nil {
			return nil, fmt.Errorf("dialing relay: opening a UDP socket: %w", err)
		}
		c.ownsPC = true
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if len(resolved) > 1 {
		timeout := cmp.Or(opts.PathTimeout, DefaultPathTimeout)
		c.paths = newPathConn(c.pc, addrs, resolved, opts.Start, timeout, log)
		c.pc = c.paths
	}
	c.tr = &quic.Transport{Conn: c.pc}
	c.conn, err = c.tr.Dial(ctx, raddr, proto.ClientTLS(opts.Identity, opts.RelayPin), opts.QUIC.Config(false))
	if err != nil {
		c.closeTransport()
		return nil, classify("dialing relay at "+strings.Join(addrs, ", "), err)
	}
	// In TLS 1.3 the client's handshake ends before relay has judged the
	// client's certificate. One round trip (an empty heartbeat) makes
	// Dial return relay's verdict: ErrUnauthorized for an unknown
	// identity, ErrVersion for a protocol mismatch.
	if _, err := c.Heartbeat(ctx, nil, false); err != nil {
		c.closeTransport()
		return nil, fmt.Errorf("dialing relay at %s: %w", c.Path(), err)
	}
	if opts.Logger != nil {
		opts.Logger.Debug("connected to relay", "addr", c.Path(), "worker", opts.Identity.Name())
	}
	if opts.ProbeEvery >= 0 {
		go c.probe(cmp.Or(opts.ProbeEvery, DefaultProbeEvery), cmp.Or(opts.ProbeTimeout, DefaultProbeTimeout))
	}
	return c, nil
}

// Done is closed when the connection has ended; Err says why.
func (c *Client) Done() <-chan struct{} { return c.conn.Context().Done() }

// Err is why the connection ended (nil while it is up), classified like a
// call's error.
func (c *Client) Err() error {
	select {
	case <-c.conn.Context().Done():
		if err := c.failure(); err != nil {
			return fmt.Errorf("connection: %w", &connError{msg: err.Error(), cause: err})
		}
		return classify("connection", context.Cause(c.conn.Context()))
	default:
		return nil
	}
}

// Path is the address the connection uses: Addr, or the one of Addrs in
// use now.
func (c *Client) Path() string {
	if c.paths == nil {
		return c.conn.RemoteAddr().String()
	}
	i, _ := c.paths.current()
	return c.paths.names[i]
}

// PathIndex is the index in Addrs of the address in use (0 with Addr),
// and how many times the connection moved between them.
func (c *Client) PathIndex() (index, moves int) {
	if c.paths == nil {
		return 0, 0
	}
	return c.paths.current()
}

// Close closes the connection (calls in flight fail) and the socket if
// Dial opened it.
func (c *Client) Close() error {
	c.once.Do(func() {
		_ = c.conn.CloseWithError(0, "worker closing")
		c.closeTransport()
	})
	return nil
}

func (c *Client) closeTransport() {
	_ = c.tr.Close()
	if c.ownsPC {
		_ = c.pc.Close()
	}
}

// call sends one request on its own stream and reads the response.
func (c *Client) call(ctx context.Context, what string, req *proto.Request) (*proto.Response, error) {
	req.Version = proto.Version
	str, err := c.conn.OpenStreamSync(ctx)
	if err != nil {
		return nil, classify(what, err)
	}
	if dl, ok := ctx.Deadline(); ok {
		_ = str.SetDeadline(dl)
	}
	// Giving up resets the stream, which tells relay to stop (a long poll
	// then leases nothing).
	stop := context.AfterFunc(ctx, func() {
		str.CancelRead(proto.Code_CANCELLED.StreamCode())
		str.CancelWrite(proto.Code_CANCELLED.StreamCode())
	})
	defer stop()
	if err := proto.WriteFrame(str, req, proto.MaxRequestFrame); err != nil {
		str.CancelRead(proto.Code_CANCELLED.StreamCode())
		str.CancelWrite(proto.Code_CANCELLED.StreamCode())
		return nil, c.callError(ctx, what, err)
	}
	if err := str.Close(); err != nil {
		return nil, c.callError(ctx, what, err)
	}
	var resp proto.Response
	if err := proto.ReadFrame(str, &resp, proto.MaxFrame); err != nil {
		str.CancelRead(proto.Code_CANCELLED.StreamCode())
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return nil, c.callError(ctx, what, err)
	}
	// relay closes its side right after the answer: read that end, so the
	// stream is finished on both sides.
	var one [1]byte
	if n, _ := str.Read(one[:]); n > 0 {
		str.CancelRead(proto.Code_BAD_FRAME.StreamCode())
	}
	if e := proto.FromWire(resp.GetError()); e != nil {
		return nil, fmt.Errorf("%s: %w", what, e)
	}
	return &resp, nil
}

// callError prefers the context's error (the caller gave up) and the
// connection's (it ended) to the stream's.
func (c *Client) callError(ctx context.Context, what string, err error) error {
	if ctx.Err() != nil {
		return fmt.Errorf("%s: %w", what, ctx.Err())
	}
	if cerr := context.Cause(c.conn.Context()); cerr != nil && c.conn.Context().Err() != nil {
		return classify(what, cerr)
	}
	if errors.Is(err, proto.ErrBadFrame) {
		return fmt.Errorf("%s: relay answered with a bad frame: %w", what, err)
	}
	return classify(what, err)
}

// Lease is one lease: it fences every call about its job.
type Lease struct {
	JobID   string
	Attempt uint32
	Token   []byte
}

func (l Lease) wire() *proto.LeaseRef {
	return &proto.LeaseRef{JobId: l.JobID, Attempt: l.Attempt, Token: l.Token}
}

// Job is a leased job.
type Job struct {
	ID      string
	Queue   string
	Payload []byte
	Lease   Lease
	// MaxAttempts is how many attempts the job gets; Lease.Attempt is
	// this one's number.
	MaxAttempts uint32
	// LeaseDuration is how long a heartbeat extends the lease by;
	// heartbeat every third of it.
	LeaseDuration time.Duration
	// Deadline is when the lease expires without a heartbeat.
	Deadline time.Time
	Created  time.Time
}

// LeaseOptions shape a long poll.
type LeaseOptions struct {
	// Queues to lease from; empty means every queue the worker may lease
	// from.
	Queues []string
	// Max is how many jobs the worker can take now (default 1).
	Max int
	// Wait is how long relay may hold the call when no job is ready
	// (relay caps it at a minute); zero answers at once.
	Wait time.Duration
	// Session, when set, numbers the call so that relay can undo the
	// leases of an answer lost with its connection (see LeaseSession).
	Session *LeaseSession
}

// Lease long-polls for up to o.Max jobs. The leases are durable on relay
// before it answers. An empty answer means Wait passed with nothing ready.
// Cancelling ctx abandons the poll; relay then leases nothing for it.
func (c *Client) Lease(ctx context.Context, o LeaseOptions) ([]Job, error) {
	if o.Max <= 0 {
		o.Max = 1
	}
	lreq := &proto.LeaseRequest{
		Queues:  o.Queues,
		MaxJobs: uint32(min(o.Max, 1<<16)),
		WaitMs:  uint32(min(o.Wait.Milliseconds(), 1<<31)),
	}
	read := false
	if o.Session != nil {
		done := o.Session.begin(lreq)
		defer func() { done(read) }()
	}
	resp, err := c.call(ctx, "lease", &proto.Request{Call: &proto.Request_Lease{Lease: lreq}})
	if err != nil {
		return nil, err
	}
	lr := resp.GetLease()
	if lr == nil {
		return nil, fmt.Errorf("lease: %w: the response holds no lease result", ErrBadFrame)
	}
	read = true
	jobs := make([]Job, 0, len(lr.GetJobs()))
	for _, j := range lr.GetJobs() {
		l := j.GetLease()
		jobs = append(jobs, Job{
			ID:            j.GetId(),
			Queue:         j.GetQueue(),
			Payload:       j.GetPayload(),
			Lease:         Lease{JobID: l.GetJobId(), Attempt: l.GetAttempt(), Token: l.GetToken()},
			MaxAttempts:   j.GetMaxAttempts(),
			LeaseDuration: time.Duration(j.GetLeaseMs()) * time.Millisecond,
			Deadline:      time.UnixMilli(j.GetDeadlineUnixMs()),
			Created:       time.UnixMilli(j.GetCreatedUnixMs()),
		})
	}
	return jobs, nil
}

// LeaseState is what a heartbeat learned of one lease.
type LeaseState = proto.LeaseState

// Lease states.
const (
	// Held: extended until Deadline; carry on.
	Held = proto.LeaseHeld
	// CancelRequested: the job was cancelled; stop it and Fail it (the
	// lease was still extended, so there is time to).
	CancelRequested = proto.LeaseCancelRequested
	// Lost: not this worker's any more; stop and drop the job.
	Lost = proto.LeaseLost
)

// LeaseStatus is one lease after a heartbeat.
type LeaseStatus struct {
	JobID    string
	State    LeaseState
	Deadline time.Time
}

// Heartbeat extends leases, answering for each in order. With allHeld,
// leases is every lease the worker holds, and relay releases its other
// leases (such as one whose Lease answer was lost): send allHeld only from
// the one place that knows every running job.
func (c *Client) Heartbeat(ctx context.Context, leases []Lease, allHeld bool) ([]LeaseStatus, error) {
	return c.heartbeat(ctx, leases, allHeld, false)
}

func (c *Client) heartbeat(ctx context.Context, leases []Lease, allHeld, probe bool) ([]LeaseStatus, error) {
	hr := &proto.HeartbeatRequest{AllHeld: allHeld, Leases: make([]*proto.LeaseRef, len(leases))}
	for i, l := range leases {
		hr.Leases[i] = l.wire()
	}
	if probe {
		padProbe(hr)
	}
	resp, err := c.call(ctx, "heartbeat", &proto.Request{Call: &proto.Request_Heartbeat{Heartbeat: hr}})
	if err != nil {
		return nil, err
	}
	sts := resp.GetHeartbeat().GetStatuses()
	if resp.GetHeartbeat() == nil || len(sts) != len(leases) {
		return nil, fmt.Errorf("heartbeat: %w: %d statuses for %d leases", ErrBadFrame, len(sts), len(leases))
	}
	out := make([]LeaseStatus, len(sts))
	for i, st := range sts {
		out[i] = LeaseStatus{JobID: st.GetJobId(), State: proto.LeaseStateOf(st.GetState())}
		if ms := st.GetDeadlineUnixMs(); ms != 0 {
			out[i].Deadline = time.UnixMilli(ms)
		}
	}
	return out, nil
}

// Complete settles a lease with its result (at most proto.MaxPayload
// bytes, or relay's lower limit). It is idempotent: repeat it until it
// returns nil or ErrLeaseLost; duplicate says relay already had this
// lease's result (the first one is kept).
func (c *Client) Complete(ctx context.Context, l Lease, result []byte) (duplicate bool, err error) {
	resp, err := c.call(ctx, "complete", &proto.Request{Call: &proto.Request_Complete{Complete: &proto.CompleteRequest{Lease: l.wire(), Result: result}}})
	if err != nil {
		return false, err
	}
	if resp.GetComplete() == nil {
		return false, fmt.Errorf("complete: %w: the response holds no complete result", ErrBadFrame)
	}
	return resp.GetComplete().GetDuplicate(), nil
}

// FailOptions qualify a failure.
type FailOptions struct {
	// Permanent failures are not retried: the job ends failed.
	Permanent bool
	// RetryAfter, if set, replaces relay's backoff before the next
	// attempt.
	RetryAfter time.Duration
}

// FailResult is what became of a failed job.
type FailResult struct {
	// State is "retrying", "dead", "failed" or "cancelled".
	State string
	// NextAttempt is when a retrying job is ready again.
	NextAttempt time.Time
	// Duplicate says relay already had this lease's failure.
	Duplicate bool
}

// Fail settles a lease with an error message. Like Complete, it is
// idempotent.
func (c *Client) Fail(ctx context.Context, l Lease, reason string, o FailOptions) (FailResult, error) {
	resp, err := c.call(ctx, "fail", &proto.Request{Call: &proto.Request_Fail{Fail: &proto.FailRequest{
		Lease:        l.wire(),
		Error:        reason,
		Permanent:    o.Permanent,
		RetryAfterMs: uint32(min(max(o.RetryAfter.Milliseconds(), 0), 1<<31)),
	}}})
	if err != nil {
		return FailResult{}, err
	}
	fr := resp.GetFail()
	if fr == nil {
		return FailResult{}, fmt.Errorf("fail: %w: the response holds no fail result", ErrBadFrame)
	}
	res := FailResult{State: fr.GetState(), Duplicate: fr.GetDuplicate()}
	if ms := fr.GetNextAttemptUnixMs(); ms != 0 {
		res.NextAttempt = time.UnixMilli(ms)
	}
	return res, nil
}
