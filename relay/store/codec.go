package store

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// A job is two records: its body (payload, idempotency key, creation
// time), written once at enqueue and never again, and its meta (state,
// attempts, the lease, the outcome), rewritten at every change. Both are
// binary: a version byte, then fields in a fixed order.
const recordV2 = 0x02

// errShort is a record that ends before its last field.
var errShort = errors.New("record cut short")

func appendBytes(b, v []byte) []byte {
	b = binary.AppendUvarint(b, uint64(len(v)))
	return append(b, v...)
}

func appendTime(b []byte, t time.Time) []byte {
	if t.IsZero() {
		return binary.AppendVarint(b, 0)
	}
	return binary.AppendVarint(b, t.UnixNano())
}

var leaseEnds = []LeaseEnd{"", EndCompleted, EndFailed, EndExpired, EndReleased}

func stateCode(s State) byte {
	for i, t := range States() {
		if s == t {
			return byte(i + 1)
		}
	}
	return 0
}

func leaseEndCode(e LeaseEnd) byte {
	for i, t := range leaseEnds {
		if e == t {
			return byte(i)
		}
	}
	return 0xff
}

// encodeMeta is j's meta record.
func encodeMeta(j *Job) []byte {
	b := make([]byte, 0, 96+len(j.Queue)+len(j.LeasedBy)+len(j.LastError)+len(j.Result))
	b = append(b, recordV2)
	b = appendBytes(b, []byte(j.Queue))
	b = append(b, stateCode(j.State), leaseEndCode(j.LeaseEnd))
	var flags byte
	if j.CancelRequested {
		flags |= 1
	}
	b = append(b, flags)
	b = binary.AppendUvarint(b, uint64(j.Attempt))
	b = binary.AppendUvarint(b, uint64(j.MaxAttempts))
	b = binary.AppendVarint(b, int64(j.LeaseDuration))
	b = appendTime(b, j.RunAfter)
	b = appendTime(b, j.UpdatedAt)
	b = appendBytes(b, j.LeaseToken)
	b = appendBytes(b, []byte(j.LeasedBy))
	b = appendTime(b, j.LeasedAt)
	b = appendTime(b, j.LeaseDeadline)
	b = appendTime(b, j.FinishedAt)
	b = binary.AppendUvarint(b, uint64(j.PayloadSize))
	b = appendBytes(b, []byte(j.LastError))
	return appendBytes(b, j.Result)
}

// encodeBody is j's body record.
func encodeBody(j *Job) []byte {
	b := make([]byte, 0, 16+len(j.IdempotencyKey)+len(j.Payload))
	b = append(b, recordV2)
	b = appendTime(b, j.CreatedAt)
	b = appendBytes(b, []byte(j.IdempotencyKey))
	return append(b, j.Payload...)
}

// reader takes fields off a record in order; the first error sticks.
type reader struct {
	b   []byte
	err error
}

func (r *reader) byte() byte {
	if r.err != nil || len(r.b) == 0 {
		r.err = errShort
		return 0
	}
	c := r.b[0]
	r.b = r.b[1:]
	return c
}

func (r *reader) uvarint() uint64 {
	if r.err != nil {
		return 0
	}
	v, n := binary.Uvarint(r.b)
	if n <= 0 {
		r.err = errShort
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *reader) varint() int64 {
	if r.err != nil {
		return 0
	}
	v, n := binary.Varint(r.b)
	if n <= 0 {
		r.err = errShort
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *reader) time() time.Time {
	if n := r.varint(); n != 0 {
		return time.Unix(0, n)
	}
	return time.Time{}
}

// bytes is the next length-prefixed field, copied out of the record
// (which lives in the file's memory map); empty is nil.
func (r *reader) bytes() []byte {
	n := r.uvarint()
	if r.err != nil {
		return nil
	}
	if n > uint64(len(r.b)) {
		r.err = errShort
		return nil
	}
	var v []byte
	if n > 0 {
		v = append([]byte(nil), r.b[:n]...)
	}
	r.b = r.b[n:]
	return v
}

func (r *reader) string() string { return string(r.bytes()) }

// decodeMeta fills j's meta fields from rec; with outcome false it stops
// before the last error and the result, which restarting does not need.
func decodeMeta(j *Job, rec []byte, outcome bool) error {
	r := reader{b: rec}
	if r.byte() != recordV2 {
		return errors.New("unknown record version")
	}
	j.Queue = r.string()
	if c := r.byte(); c >= 1 && int(c) <= len(States()) {
		j.State = States()[c-1]
	} else if r.err == nil {
		return fmt.Errorf("unknown state code %d", c)
	}
	if c := r.byte(); int(c) < len(leaseEnds) {
		j.LeaseEnd = leaseEnds[c]
	} else if r.err == nil {
		return fmt.Errorf("unknown lease end code %d", c)
	}
	j.CancelRequested = r.byte()&1 != 0
	j.Attempt = uint32(r.uvarint())
	j.MaxAttempts = uint32(r.uvarint())
	j.LeaseDuration = time.Duration(r.varint())
	j.RunAfter = r.time()
	j.UpdatedAt = r.time()
	j.LeaseToken = r.bytes()
	j.LeasedBy = r.string()
	j.LeasedAt = r.time()
	j.LeaseDeadline = r.time()
	j.FinishedAt = r.time()
	j.PayloadSize = int(r.uvarint())
	if outcome {
		j.LastError = r.string()
		j.Result = r.bytes()
	}
	return r.err
}

// decodeBody fills j's body fields from rec.
func decodeBody(j *Job, rec []byte) error {
	r := reader{b: rec}
	if r.byte() != recordV2 {
		return errors.New("unknown record version")
	}
	j.CreatedAt = r.time()
	j.IdempotencyKey = r.string()
	if r.err != nil {
		return r.err
	}
	j.Payload = nil
	if len(r.b) > 0 {
		j.Payload = append([]byte(nil), r.b...)
	}
	j.PayloadSize = len(j.Payload)
	return nil
}

// decodeV1 reads a record of schema version 1 (one JSON document).
func decodeV1(rec []byte) (Job, error) {
	var j Job
	if err := json.Unmarshal(rec, &j); err != nil {
		return Job{}, err
	}
	j.PayloadSize = len(j.Payload)
	return j, nil
}

// merge is upd written over old: the body fields (payload, idempotency
// key, creation time) never change after enqueue, and an update that
// carries no last error keeps the one before.
func merge(old, upd Job) Job {
	upd.Payload, upd.IdempotencyKey, upd.CreatedAt, upd.PayloadSize = old.Payload, old.IdempotencyKey, old.CreatedAt, old.PayloadSize
	if upd.LastError == "" {
		upd.LastError = old.LastError
	}
	return upd
}
