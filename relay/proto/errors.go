package proto

import (
	"errors"
	"fmt"
	"time"

	"github.com/quic-go/quic-go"
)

// Error is a call that relay refused or could not do, carrying its Code. It
// is what a Response's error field becomes on the worker's side, and also
// what a stream reset or connection close with an application code
// becomes, so a worker can decide by code alone:
//
//	errors.Is(err, &proto.Error{Code: proto.Code_LEASE_LOST})
type Error struct {
	Code    Code
	Message string
	// RetryAfter is how long relay asks the worker to wait (OVERLOADED).
	RetryAfter time.Duration
	// Remote is set when the code came from relay; a code the worker's own
	// side set (such as CANCELLED when its context ended) has it clear.
	Remote bool
}

func (e *Error) Error() string {
	if e.Message == "" {
		return "relay: " + e.Code.String()
	}
	return fmt.Sprintf("relay: %s: %s", e.Code, e.Message)
}

// Is matches another *Error with the same code, whatever its message, so
// that sentinels such as relay/client.ErrLeaseLost work with errors.Is.
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	return ok && t.Code == e.Code
}

// Errorf builds an Error with a formatted message.
func Errorf(code Code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// ToWire is the Error field of a Response carrying e.
func (e *Error) ToWire() *ResponseError {
	return &ResponseError{Code: e.Code, Message: e.Message, RetryAfterMs: uint32(min(e.RetryAfter.Milliseconds(), 1<<31))}
}

// FromWire turns a Response's error into an *Error (nil for nil).
func FromWire(w *ResponseError) *Error {
	if w == nil {
		return nil
	}
	return &Error{Code: w.GetCode(), Message: w.GetMessage(), RetryAfter: time.Duration(w.GetRetryAfterMs()) * time.Millisecond, Remote: true}
}

// AppCode is c as a QUIC application error code.
func (c Code) AppCode() quic.ApplicationErrorCode { return quic.ApplicationErrorCode(c) }

// StreamCode is c as a QUIC stream error code.
func (c Code) StreamCode() quic.StreamErrorCode { return quic.StreamErrorCode(c) }

// FromQUIC turns a stream reset or connection close with an application
// code into an *Error. It returns nil for other errors (a handshake
// failure, an idle timeout), which the caller classifies itself.
func FromQUIC(err error) *Error {
	var se *quic.StreamError
	if errors.As(err, &se) {
		return &Error{Code: Code(se.ErrorCode), Message: "stream reset", Remote: se.Remote}
	}
	var ae *quic.ApplicationError
	if errors.As(err, &ae) {
		msg := ae.ErrorMessage
		if msg == "" {
			msg = "connection closed"
		}
		return &Error{Code: Code(ae.ErrorCode), Message: msg, Remote: ae.Remote}
	}
	return nil
}
