package proto

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	protobuf "google.golang.org/protobuf/proto"
)

func frame(t testing.TB, m protobuf.Message) []byte {
	t.Helper()
	b, err := AppendFrame(nil, m, 0)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestFrameRoundTrip(t *testing.T) {
	reqs := []*Request{
		{Version: Version, Call: &Request_Lease{Lease: &LeaseRequest{Queues: []string{"default"}, MaxJobs: 4, WaitMs: 20000}}},
		{Version: Version, Call: &Request_Complete{Complete: &CompleteRequest{
			Lease: &LeaseRef{JobId: "01J", Attempt: 3, Token: []byte("0123456789abcdef")}, Result: bytes.Repeat([]byte{7}, MaxPayload)}}},
		{Version: Version},
	}
	var stream bytes.Buffer
	for _, r := range reqs {
		if err := WriteFrame(&stream, r, MaxRequestFrame); err != nil {
			t.Fatal(err)
		}
	}
	for i, want := range reqs {
		var got Request
		if err := ReadFrame(&stream, &got, MaxRequestFrame); err != nil {
			t.Fatalf("frame %d: %v", i, err)
		}
		if !protobuf.Equal(&got, want) {
			t.Fatalf("frame %d: got %v", i, &got)
		}
	}
	var r Request
	if err := ReadFrame(&stream, &r, 0); err != io.EOF {
		t.Fatalf("after the last frame: %v, want io.EOF", err)
	}
}

func TestReadFrameRefuses(t *testing.T) {
	good := frame(t, &Request{Version: Version, Call: &Request_Lease{Lease: &LeaseRequest{MaxJobs: 1}}})
	huge := binary.AppendUvarint(nil, MaxFrame+1)
	tests := []struct {
		name string
		in   []byte
		max  int
		want string
	}{
		{"declared over the cap", huge, 0, "frame larger than allowed"},
		{"over a smaller cap", good, 2, "frame larger than allowed"},
		{"length overflows", bytes.Repeat([]byte{0xff}, 11), 0, "overflows"},
		{"ends in the length", []byte{0x80}, 0, "inside the length prefix"},
		{"ends in the body", good[:len(good)-1], 0, "stream ended after"},
		{"garbage body", []byte{3, 0xff, 0xff, 0xff}, 0, "decoding"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var r Request
			err := ReadFrame(bytes.NewReader(tt.in), &r, tt.max)
			if !errors.Is(err, ErrBadFrame) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want ErrBadFrame mentioning %q", err, tt.want)
			}
		})
	}
}

func TestWriteFrameRefusesOversize(t *testing.T) {
	m := &CompleteRequest{Result: make([]byte, 100)}
	var b bytes.Buffer
	if err := WriteFrame(&b, m, 50); !errors.Is(err, ErrFrameTooLarge) {
		t.Fatalf("err = %v", err)
	}
	if b.Len() != 0 {
		t.Fatal("an oversize frame was partly written")
	}
}

// A reader error (such as a reset stream) is not a bad frame.
func TestReadFrameReaderError(t *testing.T) {
	boom := errors.New("stream reset")
	var r Request
	err := ReadFrame(io.MultiReader(bytes.NewReader([]byte{5, 1}), errReader{boom}), &r, 0)
	if !errors.Is(err, boom) || errors.Is(err, ErrBadFrame) {
		t.Fatalf("err = %v", err)
	}
}

type errReader struct{ err error }

func (e errReader) Read([]byte) (int, error) { return 0, e.err }

// A peer that declares a large frame and sends little costs little.
func TestReadFrameAllocatesAsBytesArrive(t *testing.T) {
	in := append(binary.AppendUvarint(nil, MaxFrame), 1, 2, 3)
	allocs := testing.AllocsPerRun(10, func() {
		var r Request
		_ = ReadFrame(bytes.NewReader(in), &r, 0)
	})
	if allocs > 20 {
		t.Fatalf("%v allocations", allocs)
	}
	var r Request
	if err := ReadFrame(bytes.NewReader(in), &r, 0); !errors.Is(err, ErrBadFrame) {
		t.Fatal(err)
	}
}

func FuzzReadFrame(f *testing.F) {
	f.Add(frame(f, &Request{Version: Version, Call: &Request_Heartbeat{Heartbeat: &HeartbeatRequest{
		Leases: []*LeaseRef{{JobId: "a", Attempt: 1, Token: []byte("t")}}, AllHeld: true}}}))
	f.Add(frame(f, &Response{Result: &Response_Lease{Lease: &LeaseResponse{Jobs: []*Job{{Id: "x", Payload: []byte("p")}}}}}))
	f.Add([]byte{0})
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01})
	f.Add([]byte{2, 0x0a})
	f.Fuzz(func(t *testing.T, in []byte) {
		for _, m := range []protobuf.Message{&Request{}, &Response{}} {
			err := ReadFrame(bytes.NewReader(in), m, 1<<16)
			if err != nil {
				if err != io.EOF && !errors.Is(err, ErrBadFrame) {
					t.Fatalf("error that is neither EOF nor a bad frame: %v", err)
				}
				continue
			}
			// What decodes re-encodes and decodes to the same message.
			b, err := AppendFrame(nil, m, 0)
			if err != nil {
				t.Fatal(err)
			}
			m2 := m.ProtoReflect().New().Interface()
			if err := ReadFrame(bytes.NewReader(b), m2, 0); err != nil {
				t.Fatalf("re-reading: %v", err)
			}
			if !protobuf.Equal(m, m2) {
				t.Fatal("round trip changed the message")
			}
		}
	})
}

func TestCheckName(t *testing.T) {
	tests := []struct {
		in string
		ok bool
	}{
		{"default", true}, {"a.b_c-D9", true}, {"", false}, {"a b", false}, {"é", false},
		{strings.Repeat("x", MaxNameLen), true}, {strings.Repeat("x", MaxNameLen+1), false}, {"a\x00", false},
	}
	for _, tt := range tests {
		if err := CheckName("queue", tt.in); (err == nil) != tt.ok {
			t.Errorf("CheckName(%q) = %v", tt.in, err)
		}
	}
}

func TestQUICOptions(t *testing.T) {
	c := QUICOptions{}.Config(true)
	if c.InitialPacketSize != 1372 || !c.DisablePathMTUDiscovery || c.KeepAlivePeriod != DefaultKeepAlive ||
		c.MaxIdleTimeout != DefaultIdleTimeout || c.MaxIncomingStreams != DefaultServerStreams || c.MaxIncomingUniStreams != -1 {
		t.Fatalf("server defaults: %+v", c)
	}
	if c := (QUICOptions{}).Config(false); c.MaxIncomingStreams != -1 {
		t.Fatalf("a worker accepts streams: %+v", c)
	}
	c = QUICOptions{PacketSize: 1232, PathMTUDiscovery: true, KeepAlive: -1}.Config(false)
	if c.InitialPacketSize != 1232 || c.DisablePathMTUDiscovery || c.KeepAlivePeriod != 0 {
		t.Fatalf("overrides: %+v", c)
	}
	bad := []QUICOptions{{PacketSize: 1000}, {PacketSize: 1500}, {KeepAlive: time.Minute}, {IdleTimeout: -1}}
	for _, o := range bad {
		if o.Validate() == nil {
			t.Errorf("%+v validated", o)
		}
	}
}

// ReadFrameReserving asks for the declared length before it reads the
// body, reads nothing more when refused, and gives back what it took.
func TestReadFrameReserving(t *testing.T) {
	req := &Request{Version: Version, Call: &Request_Complete{Complete: &CompleteRequest{Result: bytes.Repeat([]byte{1}, 1000)}}}
	b := frame(t, req)
	declared := protobuf.Size(req)
	no := errors.New("no room")
	r := bytes.NewReader(b)
	var asked int
	if _, err := ReadFrameReserving(r, &Request{}, MaxRequestFrame, func(n int) (func(), error) { asked = n; return nil, no }); !errors.Is(err, no) {
		t.Fatalf("refused reservation: %v", err)
	}
	if asked != declared || r.Len() != declared {
		t.Fatalf("asked for %d (declared %d), %d bytes left unread (want the whole body)", asked, declared, r.Len())
	}
	held := 0
	release, err := ReadFrameReserving(bytes.NewReader(b), &Request{}, MaxRequestFrame, func(n int) (func(), error) {
		held += n
		return func() { held -= n }, nil
	})
	if err != nil || held != declared {
		t.Fatalf("err %v, held %d", err, held)
	}
	release()
	if held != 0 {
		t.Fatalf("held %d after release", held)
	}
}
