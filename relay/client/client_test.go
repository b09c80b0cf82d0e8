package client

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/tunnel-dev/tunnel/internal/testutil"
	"github.com/tunnel-dev/tunnel/relay/proto"
)

func TestDialRefusesIncompleteOptions(t *testing.T) {
	id := testutil.Identity(t, "w")
	tests := []struct {
		name string
		o    Options
		want string
	}{
		{"no address", Options{Identity: id, RelayPin: id.Pin()}, "no address"},
		{"no identity", Options{Addr: "127.0.0.1:1", RelayPin: id.Pin()}, "no identity"},
		{"no pin", Options{Addr: "127.0.0.1:1", Identity: id}, "no relay pin"},
		{"bad packet size", Options{Addr: "127.0.0.1:1", Identity: id, RelayPin: id.Pin(), QUIC: proto.QUICOptions{PacketSize: 9000}}, "packet size"},
		{"bad address", Options{Addr: "nowhere", Identity: id, RelayPin: id.Pin()}, "resolving"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Dial(context.Background(), tt.o)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want one mentioning %q", err, tt.want)
			}
		})
	}
}

// Nobody answers: Dial gives up when its context does, with the
// context's error.
func TestDialTimesOut(t *testing.T) {
	id := testutil.Identity(t, "w")
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	_, err := Dial(ctx, Options{Addr: "127.0.0.1:9", Identity: id, RelayPin: id.Pin()})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v", err)
	}
}

func TestClassify(t *testing.T) {
	tests := []struct {
		name    string
		in      error
		is      []error
		isNot   []error
		mention string
	}{
		{"revoked", &quic.ApplicationError{Remote: true, ErrorCode: proto.Code_CREDENTIALS_REVOKED.AppCode(), ErrorMessage: "gone"},
			[]error{ErrConnectionLost, ErrCredentialsRevoked}, []error{ErrUnauthorized}, "gone"},
		{"shutting down", &quic.ApplicationError{Remote: true, ErrorCode: proto.Code_SHUTTING_DOWN.AppCode()},
			[]error{ErrConnectionLost, ErrShuttingDown}, nil, "SHUTTING_DOWN"},
		{"bad frame reset", &quic.StreamError{Remote: true, ErrorCode: proto.Code_BAD_FRAME.StreamCode()},
			[]error{ErrBadFrame}, []error{ErrConnectionLost}, "BAD_FRAME"},
		{"refused identity", &quic.TransportError{Remote: true, ErrorCode: 0x100 + 42},
			[]error{ErrUnauthorized}, []error{ErrConnectionLost}, "workers file"},
		{"idle timeout", &quic.IdleTimeoutError{}, []error{ErrConnectionLost}, []error{ErrUnauthorized}, "timeout"},
		{"stateless reset", &quic.StatelessResetError{}, []error{ErrConnectionLost}, nil, "reset"},
		{"cancelled", context.Canceled, []error{context.Canceled}, []error{ErrConnectionLost}, "canceled"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := classify("lease", fmt.Errorf("wrapped: %w", tt.in))
			for _, want := range tt.is {
				if !errors.Is(err, want) {
					t.Errorf("%v is not %v", err, want)
				}
			}
			for _, not := range tt.isNot {
				if errors.Is(err, not) {
					t.Errorf("%v is %v", err, not)
				}
			}
			if !strings.HasPrefix(err.Error(), "lease: ") || !strings.Contains(err.Error(), tt.mention) {
				t.Errorf("message %q", err)
			}
		})
	}
	over := fmt.Errorf("lease: %w", &proto.Error{Code: proto.Code_OVERLOADED, RetryAfter: 1500 * time.Millisecond})
	if !errors.Is(over, ErrOverloaded) || RetryAfter(over) != 1500*time.Millisecond {
		t.Errorf("overloaded: %v, retry after %s", over, RetryAfter(over))
	}
}
