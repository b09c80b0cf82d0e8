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
	lastMS uint64
	rnd    [10]byte
}

// crockford is Crockford's base32 alphabet, in ASCII order so that ids
// sort as their bytes do.
const crockford = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"

// idEncoding writes ids; it is never changed.
var idEncoding = base32.NewEncoding(crockford).WithPadding(base32.NoPadding)

// idLen is the length of an id's text.
const idLen = 26

// parseID is the 16 bytes an id's text stands for; false if s is not an
// id this relay could have made (the text of the bytes must be s again).
func parseID(s string) ([16]byte, bool) {
	var b [16]byte
	if len(s) != idLen {
		return b, false
	}
	var text [idLen]byte
	copy(text[:], s)
	n, err := idEncoding.Decode(b[:], text[:])
	if err != nil || n != len(b) {
		return [16]byte{}, false
	}
	var again [idLen]byte
	idEncoding.Encode(again[:], b[:])
	if again != text {
		return [16]byte{}, false
	}
	return b, true
}

// idString is the text of an id.
func (q *Queue) idString(b [16]byte) string { return idEncoding.EncodeToString(b[:]) }

func (g *idGen) next(now time.Time) string {
	b := g.nextBytes(now)
	return idEncoding.EncodeToString(b[:])
}

// nextBytes is next before it is written as text.
func (g *idGen) nextBytes(now time.Time) [16]byte {
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
	var b [16]byte
	binary.BigEndian.PutUint64(b[:8], ms<<16)
	copy(b[6:], g.rnd[:])
	// 128 bits → 26 characters; the padding bits are at the end, so the
	// text sorts as the bytes do.
	return b
}

// newToken is a lease token: 16 random bytes.
func newToken() [16]byte {
	var b [16]byte
	_, _ = rand.Read(b[:])
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
