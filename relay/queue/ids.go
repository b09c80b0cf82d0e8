package queue

import (
	"crypto/rand"
	"encoding/base32"
	"encoding/binary"
	"sync"
	"time"
)

// idGen makes job ids that sort by creation time: 48 bits of Unix
// milliseconds and 80 random bits, in Crockford's base32 (26 characters,
// like a ULID). Within one millisecond the random part counts up, so ids
// made by one relay sort in the order they were made.
type idGen struct {
	enc    *base32.Encoding
	lastMS uint64
	rnd    [10]byte
}

// crockford is Crockford's base32 alphabet, in ASCII order so that ids
// sort as their bytes do.
const crockford = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"

func (g *idGen) next(now time.Time) string {
	ms := uint64(now.UnixMilli())
	if ms <= g.lastMS {
		ms = g.lastMS
		// Count up in the random part; on overflow, borrow a millisecond.
		for i := len(g.rnd) - 1; i >= 0; i-- {
			g.rnd[i]++
			if g.rnd[i] != 0 {
				break
			}
			if i == 0 {
				ms++
			}
		}
	} else {
		_, _ = rand.Read(g.rnd[:])
		g.rnd[0] &= 0x7f // room to count up
	}
	g.lastMS = ms
	if g.enc == nil {
		g.enc = base32.NewEncoding(crockford).WithPadding(base32.NoPadding)
	}
	var b [16]byte
	binary.BigEndian.PutUint64(b[:8], ms<<16)
	copy(b[6:], g.rnd[:])
	// 128 bits → 26 characters; the padding bits are at the end, so the
	// text sorts as the bytes do.
	return g.enc.EncodeToString(b[:])
}

// newToken is a lease token: 16 random bytes.
func newToken() []byte {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return b
}

// IDs makes job ids as the embedded queue does, for other backends; it is
// safe for concurrent use.
type IDs struct {
	mu sync.Mutex
	g  idGen
}

// Next is a new id made at now.
func (i *IDs) Next(now time.Time) string {
	i.mu.Lock()
	defer i.mu.Unlock()
	return i.g.next(now)
}
