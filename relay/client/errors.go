package client

import (
	"context"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/tunnel-dev/tunnel/relay/proto"
)

// Errors a call can return; test them with errors.Is. Those that are
// *proto.Error match any error with their code, whatever its message.
var (
	// ErrUnauthorized: relay does not know this identity (the handshake
	// was refused), or the worker may not do this on that queue.
	ErrUnauthorized error = &proto.Error{Code: proto.Code_UNAUTHORIZED}
	// ErrLeaseLost: the lease is no longer this worker's (it expired and
	// the job moved on, or it was settled); drop the job and its result.
	ErrLeaseLost error = &proto.Error{Code: proto.Code_LEASE_LOST}
	// ErrOverloaded: relay cannot take more now; wait RetryAfter (see
	// RetryAfter) and try again.
	ErrOverloaded error = &proto.Error{Code: proto.Code_OVERLOADED}
	// ErrCredentialsRevoked: this identity's pin was removed from relay's
	// workers file; the connection is closed. Dial with the new identity.
	ErrCredentialsRevoked error = &proto.Error{Code: proto.Code_CREDENTIALS_REVOKED}
	// ErrShuttingDown: relay is stopping; dial again shortly.
	ErrShuttingDown error = &proto.Error{Code: proto.Code_SHUTTING_DOWN}
	// ErrNotFound: relay has no such job.
	ErrNotFound error = &proto.Error{Code: proto.Code_NOT_FOUND}
	// ErrInvalid: a field of the request is wrong; the message names it.
	ErrInvalid error = &proto.Error{Code: proto.Code_INVALID_ARGUMENT}
	// ErrBadFrame: relay could not read the request (a bug, or a version
	// mismatch).
	ErrBadFrame error = &proto.Error{Code: proto.Code_BAD_FRAME}
	// ErrVersion: relay does not speak this protocol version.
	ErrVersion error = &proto.Error{Code: proto.Code_VERSION}
	// ErrConnectionLost: the QUIC connection is gone (relay restarted,
	// the tunnel dropped, an idle timeout, or relay closed it — then the
	// error also matches the code relay gave, such as
	// ErrCredentialsRevoked). The call's outcome is unknown: dial again
	// and repeat it; complete and fail are idempotent.
	ErrConnectionLost = errors.New("relay: connection lost")
)

// ErrWrongRelay: the server presented a key other than the pinned one.
// Nothing was sent to it.
var ErrWrongRelay = errors.New("relay: the server's key is not the pinned relay key")

// RetryAfter is how long relay asked to wait (with ErrOverloaded), or 0.
func RetryAfter(err error) time.Duration {
	var e *proto.Error
	if errors.As(err, &e) {
		return e.RetryAfter
	}
	return 0
}

// connError is a connection-level failure: it matches ErrConnectionLost
// and, through Unwrap, the code relay closed it with.
type connError struct {
	msg   string
	cause error
}

func (e *connError) Error() string        { return "relay: connection lost: " + e.msg }
func (e *connError) Unwrap() error        { return e.cause }
func (e *connError) Is(target error) bool { return target == ErrConnectionLost }

// classify turns a QUIC error into the client's errors. what says what was
// being done.
func classify(what string, err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("%s: %w", what, err)
	}
	var ae *quic.ApplicationError
	if errors.As(err, &ae) {
		pe := &proto.Error{Code: proto.Code(ae.ErrorCode), Message: ae.ErrorMessage, Remote: ae.Remote}
		return fmt.Errorf("%s: %w", what, &connError{msg: pe.Error(), cause: pe})
	}
	var se *quic.StreamError
	if errors.As(err, &se) {
		return fmt.Errorf("%s: %w", what, &proto.Error{Code: proto.Code(se.ErrorCode), Message: "stream reset", Remote: se.Remote})
	}
	var te *quic.TransportError
	if errors.As(err, &te) && te.Remote && isTLSAlert(te, 42, 43, 46, 48, 49) {
		// bad_certificate, unsupported_certificate, certificate_unknown,
		// unknown_ca, access_denied: relay refused our identity.
		return fmt.Errorf("%s: %w", what, &proto.Error{Code: proto.Code_UNAUTHORIZED,
			Message: "relay refused this identity: is its pin (tunnel keys pin identity.crt) in relay's workers file? (" + te.Error() + ")", Remote: true})
	}
	if errors.As(err, &te) && !te.Remote && isTLSAlert(te, 42) {
		return fmt.Errorf("%s: %w (%v)", what, ErrWrongRelay, te)
	}
	if errors.As(err, &te) && te.Remote && isTLSAlert(te, 120) {
		return fmt.Errorf("%s: %w", what, &connError{msg: "the server does not speak " + proto.ALPN + " (" + te.Error() + ")", cause: err})
	}
	var ne net.Error
	if errors.As(err, &te) || errors.As(err, &ne) || errors.Is(err, net.ErrClosed) {
		return fmt.Errorf("%s: %w", what, &connError{msg: err.Error(), cause: err})
	}
	var ie *quic.IdleTimeoutError
	var he *quic.HandshakeTimeoutError
	var sr *quic.StatelessResetError
	if errors.As(err, &ie) || errors.As(err, &he) || errors.As(err, &sr) {
		return fmt.Errorf("%s: %w", what, &connError{msg: err.Error(), cause: err})
	}
	return fmt.Errorf("%s: %w", what, err)
}

// isTLSAlert reports whether te carries one of the TLS alerts.
func isTLSAlert(te *quic.TransportError, alerts ...uint8) bool {
	if te.ErrorCode < 0x100 || te.ErrorCode > 0x1ff {
		return false
	}
	for _, a := range alerts {
		if uint8(te.ErrorCode-0x100) == a {
			return true
		}
	}
	return false
}
