package store

import (
	"reflect"
	"testing"
	"time"
)

// A record decodes to what was encoded.
func TestCodecRoundTrip(t *testing.T) {
	now := time.Unix(0, time.Now().UnixNano())
	j := Job{
		ID: "01X", Queue: "q", Payload: []byte("pay"), PayloadSize: 3, State: Dead, Attempt: 7, MaxAttempts: 9,
		LeaseDuration: 1500 * time.Millisecond, IdempotencyKey: "key", RunAfter: now, CreatedAt: now.Add(-time.Hour),
		UpdatedAt: now, LeaseToken: []byte("0123456789abcdef"), LeasedBy: "w", LeasedAt: now, LeaseDeadline: now.Add(time.Second),
		LeaseEnd: EndExpired, CancelRequested: true, Result: []byte("res"), LastError: "oops", FinishedAt: now,
	}
	got := Job{ID: j.ID}
	if err := decodeMeta(&got, encodeMeta(&j), true); err != nil {
		t.Fatal(err)
	}
	if err := decodeBody(&got, encodeBody(&j)); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, j) {
		t.Fatalf("round trip:\n got %+v\nwant %+v", got, j)
	}
	bare := Job{Queue: "q", State: Queued}
	var z Job
	if err := decodeMeta(&z, encodeMeta(&bare), true); err != nil || !reflect.DeepEqual(z, bare) {
		t.Fatalf("a job with no times, lease or outcome: %+v %v", z, err)
	}
}

// Decoding arbitrary bytes fails cleanly or yields a record that encodes
// back to a record decoding to the same job.
func FuzzDecodeMeta(f *testing.F) {
	j := Job{Queue: "q", State: Leased, Attempt: 1, LeaseToken: []byte("t"), LastError: "e", Result: []byte("r")}
	f.Add(encodeMeta(&j))
	f.Add([]byte{recordV2})
	f.Add([]byte(`{"id":"x"}`))
	f.Fuzz(func(t *testing.T, rec []byte) {
		var a Job
		if err := decodeMeta(&a, rec, true); err != nil {
			return
		}
		var b Job
		if err := decodeMeta(&b, encodeMeta(&a), true); err != nil || !reflect.DeepEqual(a, b) {
			t.Fatalf("re-encoded record: %+v %v, first %+v", b, err, a)
		}
	})
}

func FuzzDecodeBody(f *testing.F) {
	j := Job{Payload: []byte("p"), IdempotencyKey: "k", CreatedAt: time.Unix(5, 0)}
	f.Add(encodeBody(&j))
	f.Add([]byte{recordV2, 0})
	f.Fuzz(func(t *testing.T, rec []byte) {
		var a Job
		if err := decodeBody(&a, rec); err != nil {
			return
		}
		var b Job
		if err := decodeBody(&b, encodeBody(&a)); err != nil || !reflect.DeepEqual(a, b) {
			t.Fatalf("re-encoded body: %+v %v, first %+v", b, err, a)
		}
	})
}
