package tunnel

import (
	"sync"
	"time"

	"golang.zx2c4.com/wireguard/conn"

	"github.com/tunnel-dev/tunnel/keys"
	"github.com/tunnel-dev/tunnel/tunnel/handshake"
)

// Reading the key of a refused handshake. wireguard-go drops an
// initiation from a key it does not know without saying whose it was, but
// the initiator's static key is in the message, encrypted to this
// gateway's key (tunnel/handshake reads it). So the bind shows every
// initiation to strangers.seen, which keeps a copy per source, and when
// wireguard-go logs the refusal (wglog.go) the copy from that source is
// decrypted. Known peers' initiations are copied, never decrypted. The
// work is bounded three ways: at most maxStrangerSources copies, one
// decryption per source per unknownKeyLogEvery (the key read is reused in
// between), and at most strangerDecodesPerSecond decryptions in all, so a
// flood from spoofed sources costs a copy per datagram.
const (
	maxStrangerSources       = 1024
	strangerDecodesPerSecond = 20
	// maxStrangerKeys bounds the key label of
	// tunnel_unknown_key_handshakes_total; later keys count as "other".
	maxStrangerKeys = 64
)

// Values of tunnel_unknown_key_handshakes_total's key label besides a
// base64 public key.
const (
	strangerUnread = "unread" // not decrypted: no copy, for another key, not decryptable, or over the budget
	strangerOther  = "other"  // a key past the first maxStrangerKeys
)

// strangers remembers initiations by source and reads their keys.
type strangers struct {
	mu       sync.Mutex // guards everything below
	ours     keys.PrivateKey
	bySource map[string]*strangerSource
	budget   float64 // decryptions allowed now, refilled at strangerDecodesPerSecond
	refilled time.Time
	perKey   map[string]uint64 // refusals by key label
}

type strangerSource struct {
	msg   [handshake.InitiationSize]byte
	fresh bool // msg arrived after the last decryption
	key   keys.PublicKey
	read  bool      // key was read from this source's initiation
	at    time.Time // when msg was copied, or key read
}

// setKey is the gateway's private key, which the initiations it reads are
// encrypted to (set at start and by a reload that changes it).
func (s *strangers) setKey(k keys.PrivateKey) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if k == s.ours {
		return
	}
	s.ours = k
	for _, e := range s.bySource {
		e.read = false // read with the old key
	}
}

// seen keeps a copy of an initiation from ep. It runs on wireguard-go's
// receive path: a map write, no cryptography.
func (s *strangers) seen(msg []byte, ep conn.Endpoint) {
	source := ep.DstToString()
	now := time.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.bySource == nil {
		s.bySource = map[string]*strangerSource{}
	}
	e := s.bySource[source]
	if e == nil {
		if len(s.bySource) >= maxStrangerSources {
			s.evict(now)
		}
		e = &strangerSource{}
		s.bySource[source] = e
	}
	copy(e.msg[:], msg)
	e.fresh, e.at = true, now
}

// evict forgets the sources not heard from for an interval, or one source
// if every one is recent (a flood: some initiations go unread).
func (s *strangers) evict(now time.Time) {
	for k, e := range s.bySource {
		if now.Sub(e.at) >= unknownKeyLogEvery {
			delete(s.bySource, k)
		}
	}
	for k := range s.bySource {
		if len(s.bySource) < maxStrangerSources {
			break
		}
		delete(s.bySource, k)
	}
}

// identify is the key of the latest initiation from source, if it can be
// read: decrypted now when the source's last reading is older than an
// interval and the budget allows, else the last reading.
func (s *strangers) identify(source string, now time.Time) (keys.PublicKey, bool) {
	s.mu.Lock()
	e := s.bySource[source]
	if e == nil || !e.fresh || (e.read && now.Sub(e.at) < unknownKeyLogEvery) || !s.spend(now) {
		defer s.mu.Unlock()
		if e == nil {
			return keys.PublicKey{}, false
		}
		return e.key, e.read
	}
	msg, ours := e.msg, s.ours
	e.fresh = false
	s.mu.Unlock()

	key, err := handshake.InitiatorKey(ours, msg[:])

	s.mu.Lock()
	defer s.mu.Unlock()
	if err != nil {
		e.read = false
		return keys.PublicKey{}, false
	}
	e.key, e.read, e.at = key, true, now
	return key, true
}

// spend takes one decryption from the budget, if there is one.
func (s *strangers) spend(now time.Time) bool {
	s.budget += now.Sub(s.refilled).Seconds() * strangerDecodesPerSecond
	s.budget = min(s.budget, strangerDecodesPerSecond)
	s.refilled = now
	if s.budget < 1 {
		return false
	}
	s.budget--
	return true
}

// count counts one refusal under its key label.
func (s *strangers) count(key keys.PublicKey, read bool) {
	label := strangerUnread
	if read {
		label = key.String()
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.perKey == nil {
		s.perKey = map[string]uint64{}
	}
	if _, ok := s.perKey[label]; !ok && read && len(s.perKey) >= maxStrangerKeys {
		label = strangerOther
	}
	s.perKey[label]++
}

// counts copies the refusals by key label.
func (s *strangers) counts() map[string]uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string]uint64, len(s.perKey)+2)
	out[strangerUnread], out[strangerOther] = 0, 0
	for k, v := range s.perKey {
		out[k] = v
	}
	return out
}
