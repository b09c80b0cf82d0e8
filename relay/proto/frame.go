package proto

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	protobuf "google.golang.org/protobuf/proto"
)

// Size caps. They are part of the protocol: a peer never sends more.
const (
	// MaxPayload bounds a job's payload and a job's result.
	MaxPayload = 1 << 20
	// MaxRequestFrame bounds a Request frame: a Complete carrying the
	// largest result, with room for its envelope.
	MaxRequestFrame = MaxPayload + 64<<10
	// MaxFrame bounds any frame, such as a Lease response carrying several
	// jobs; relay packs no more jobs into one response than fit.
	MaxFrame = 4 << 20
	// readChunk is how much of a frame is allocated before its bytes have
	// arrived, so a peer that declares a large frame and sends nothing
	// costs little memory.
	readChunk = 64 << 10
)

// ErrFrameTooLarge is returned for a frame whose declared length is above
// the cap; nothing past the length is read.
var ErrFrameTooLarge = errors.New("frame larger than allowed")

// ErrBadFrame is wrapped by every ReadFrame error caused by the bytes
// themselves (as opposed to the reader failing): a bad length prefix, a
// frame that ends early, a body that does not decode, or ErrFrameTooLarge.
var ErrBadFrame = errors.New("bad frame")

// AppendFrame appends m as one frame (uvarint length, then the message) to
// b. It refuses a message above max bytes (MaxFrame when max is zero).
func AppendFrame(b []byte, m protobuf.Message, max int) ([]byte, error) {
	if max <= 0 || max > MaxFrame {
		max = MaxFrame
	}
	size := protobuf.Size(m)
	if size > max {
		return b, fmt.Errorf("encoding frame: %w: %d bytes, at most %d", ErrFrameTooLarge, size, max)
	}
	b = binary.AppendUvarint(b, uint64(size))
	b, err := protobuf.MarshalOptions{UseCachedSize: true}.MarshalAppend(b, m)
	if err != nil {
		return b, fmt.Errorf("encoding frame: %w", err)
	}
	return b, nil
}

// WriteFrame writes m to w as one frame, in one Write.
func WriteFrame(w io.Writer, m protobuf.Message, max int) error {
	b, err := AppendFrame(nil, m, max)
	if err != nil {
		return err
	}
	if _, err := w.Write(b); err != nil {
		return fmt.Errorf("writing frame: %w", err)
	}
	return nil
}

// ReadFrame reads one frame from r into m. A frame declared above max
// bytes (MaxFrame when max is zero or larger) is refused before its body is
// read. Errors caused by the bytes wrap ErrBadFrame; errors of the reader
// (a reset stream, a deadline) are returned wrapped as they are. A clean
// end of stream before the first byte is io.EOF.
func ReadFrame(r io.Reader, m protobuf.Message, max int) error {
	_, err := ReadFrameReserving(r, m, max, nil)
	return err
}

// ReadFrameReserving is ReadFrame that, once it knows a frame's declared
// length and before it reads a byte of the body, asks reserve for that
// many bytes; it may wait (for a shared budget) or refuse, and its error
// is returned as it is. The body is never read past what was reserved.
// The release it returns (a no-op when nothing was reserved) gives the
// bytes back: call it once m is no longer needed.
func ReadFrameReserving(r io.Reader, m protobuf.Message, max int, reserve func(n int) (release func(), err error)) (release func(), err error) {
	release = func() {}
	if max <= 0 || max > MaxFrame {
		max = MaxFrame
	}
	n, err := readLength(r)
	if err != nil {
		return release, err
	}
	if n > uint64(max) {
		return release, fmt.Errorf("%w: %w: %d bytes declared, at most %d", ErrBadFrame, ErrFrameTooLarge, n, max)
	}
	if reserve != nil {
		rel, err := reserve(int(n))
		if err != nil {
			return release, err
		}
		release = rel
	}
	b, err := readBody(r, int(n))
	if err != nil {
		return release, err
	}
	if err := (protobuf.UnmarshalOptions{DiscardUnknown: true}).Unmarshal(b, m); err != nil {
		return release, fmt.Errorf("%w: decoding %d-byte message: %w", ErrBadFrame, n, err)
	}
	return release, nil
}

// readLength reads a uvarint one byte at a time, so that nothing past the
// length is consumed.
func readLength(r io.Reader) (uint64, error) {
	var x uint64
	var s uint
	var one [1]byte
	for i := 0; i < binary.MaxVarintLen64; i++ {
		if _, err := io.ReadFull(r, one[:]); err != nil {
			if i == 0 && errors.Is(err, io.EOF) {
				return 0, io.EOF
			}
			if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
				return 0, fmt.Errorf("%w: stream ended inside the length prefix", ErrBadFrame)
			}
			return 0, fmt.Errorf("reading frame length: %w", err)
		}
		c := one[0]
		if c < 0x80 {
			if i == binary.MaxVarintLen64-1 && c > 1 {
				break
			}
			return x | uint64(c)<<s, nil
		}
		x |= uint64(c&0x7f) << s
		s += 7
	}
	return 0, fmt.Errorf("%w: length prefix overflows 64 bits", ErrBadFrame)
}

// readBody reads exactly n bytes, growing its buffer only as bytes arrive.
func readBody(r io.Reader, n int) ([]byte, error) {
	b := make([]byte, 0, min(n, readChunk))
	for len(b) < n {
		if len(b) == cap(b) {
			b = append(b, make([]byte, min(n-len(b), cap(b)))...)[:len(b)]
		}
		k, err := r.Read(b[len(b):min(n, cap(b))])
		b = b[:len(b)+k]
		if err != nil {
			if len(b) == n {
				break
			}
			if errors.Is(err, io.EOF) {
				return nil, fmt.Errorf("%w: stream ended after %d of %d bytes", ErrBadFrame, len(b), n)
			}
			return nil, fmt.Errorf("reading frame: %w", err)
		}
	}
	return b, nil
}
