package handshake

import (
	"crypto/hmac"
	"crypto/subtle"
	"errors"
	"fmt"
	"hash"

	"golang.org/x/crypto/blake2s"
	"golang.org/x/crypto/chacha20poly1305"
	"golang.org/x/crypto/curve25519"

	"github.com/tunnel-dev/tunnel/keys"
)

// InitiationSize is the length of a handshake initiation message.
const InitiationSize = 148

// Offsets of an initiation's fields: type (1 byte) and three zero bytes,
// the sender's index (4), the ephemeral key (32), the encrypted static key
// (32 and a 16-byte tag), the encrypted TAI64N timestamp (12 and a tag),
// mac1 and mac2 (16 each).
const (
	offEphemeral = 8
	offStatic    = offEphemeral + keys.KeyLen
	offTimestamp = offStatic + keys.KeyLen + chacha20poly1305.Overhead
	offMAC1      = offTimestamp + 12 + chacha20poly1305.Overhead
	offMAC2      = offMAC1 + 16
)

const (
	construction = "Noise_IKpsk2_25519_ChaChaPoly_BLAKE2s"
	identifier   = "WireGuard v1 zx2c4 Jason@zx2c4.com"
	labelMAC1    = "mac1----"
)

// Errors InitiatorKey returns, so that a caller can count by cause.
var (
	// ErrNotInitiation: not a 148-byte message of type 1.
	ErrNotInitiation = errors.New("not a WireGuard handshake initiation")
	// ErrOtherKey: the message's mac1 is not for this responder's key
	// (it was sent to another gateway's key).
	ErrOtherKey = errors.New("handshake initiation sent for another responder key")
	// ErrUnreadable: the encrypted static key or timestamp does not open
	// (a corrupted or forged message, or one whose sender does not hold
	// the private key of the static key it names).
	ErrUnreadable = errors.New("handshake initiation does not decrypt")
)

// IsInitiation reports whether b has the shape of a handshake
// initiation: what a receive path checks before keeping a copy.
func IsInitiation(b []byte) bool {
	return len(b) == InitiationSize && b[0] == 1 && b[1] == 0 && b[2] == 0 && b[3] == 0
}

// InitiatorKey is the static public key of the sender of the initiation
// msg, addressed to the responder whose private key is ours. It checks
// mac1 first (one hash: a message for another key costs no
// Diffie-Hellman), then opens the static key, then the timestamp, so a key
// it returns is one whose holder sent the message. Two X25519 operations
// in all.
func InitiatorKey(ours keys.PrivateKey, msg []byte) (keys.PublicKey, error) {
	if !IsInitiation(msg) {
		return keys.PublicKey{}, ErrNotInitiation
	}
	responder := ours.Public()
	if !validMAC1(responder, msg) {
		return keys.PublicKey{}, ErrOtherKey
	}

	// Ci := HASH(Construction); Hi := HASH(Ci || Identifier);
	// Hi := HASH(Hi || Spub_r).
	ck := hashOf([]byte(construction))
	h := hashOf(ck[:], []byte(identifier))
	h = hashOf(h[:], responder[:])

	// Ci := KDF1(Ci, Epub_i); Hi := HASH(Hi || Epub_i).
	ephemeral := msg[offEphemeral:offStatic]
	ck = kdf1(ck, ephemeral)
	h = hashOf(h[:], ephemeral)

	// (Ci, k) := KDF2(Ci, DH(Spriv_r, Epub_i)); Spub_i := AEAD-open(k, 0,
	// msg.static, Hi); Hi := HASH(Hi || msg.static).
	ss, err := curve25519.X25519(ours[:], ephemeral)
	if err != nil { // a low-order point: the shared secret is zero
		return keys.PublicKey{}, fmt.Errorf("%w: ephemeral key: %w", ErrUnreadable, err)
	}
	ck, k := kdf2(ck, ss)
	sealedStatic := msg[offStatic:offTimestamp]
	var initiator keys.PublicKey
	if err := open(k, initiator[:0], sealedStatic, h[:]); err != nil {
		return keys.PublicKey{}, fmt.Errorf("%w: static key: %w", ErrUnreadable, err)
	}
	h = hashOf(h[:], sealedStatic)

	// (Ci, k) := KDF2(Ci, DH(Spriv_r, Spub_i)); the timestamp opens only
	// for the holder of Spriv_i (or of ours).
	ss, err = curve25519.X25519(ours[:], initiator[:])
	if err != nil {
		return keys.PublicKey{}, fmt.Errorf("%w: static key: %w", ErrUnreadable, err)
	}
	_, k = kdf2(ck, ss)
	var stamp [12]byte
	if err := open(k, stamp[:0], msg[offTimestamp:offMAC1], h[:]); err != nil {
		return keys.PublicKey{}, fmt.Errorf("%w: timestamp: %w", ErrUnreadable, err)
	}
	return initiator, nil
}

// validMAC1 checks msg's mac1: MAC(HASH(Label-Mac1 || Spub_r), the bytes
// before mac1), a keyed BLAKE2s-128.
func validMAC1(responder keys.PublicKey, msg []byte) bool {
	m := mac1Of(responder, msg)
	return subtle.ConstantTimeCompare(m[:], msg[offMAC1:offMAC2]) == 1
}

func mac1Of(responder keys.PublicKey, msg []byte) [blake2s.Size128]byte {
	key := hashOf([]byte(labelMAC1), responder[:])
	m, _ := blake2s.New128(key[:]) // a 32-byte key is always accepted
	m.Write(msg[:offMAC1])
	var out [blake2s.Size128]byte
	m.Sum(out[:0])
	return out
}

// hashOf is HASH: BLAKE2s-256 of the inputs, concatenated.
func hashOf(parts ...[]byte) [blake2s.Size]byte {
	h, _ := blake2s.New256(nil) // unkeyed: cannot fail
	for _, p := range parts {
		h.Write(p)
	}
	var out [blake2s.Size]byte
	h.Sum(out[:0])
	return out
}

func newHash() hash.Hash {
	h, _ := blake2s.New256(nil)
	return h
}

// hmacOf is HMAC-BLAKE2s-256.
func hmacOf(key []byte, parts ...[]byte) [blake2s.Size]byte {
	m := hmac.New(newHash, key)
	for _, p := range parts {
		m.Write(p)
	}
	var out [blake2s.Size]byte
	m.Sum(out[:0])
	return out
}

// kdf1 and kdf2 are the whitepaper's KDF_n: τ0 := HMAC(key, input),
// τ1 := HMAC(τ0, 0x1), τ2 := HMAC(τ0, τ1 || 0x2).
func kdf1(key [blake2s.Size]byte, input []byte) [blake2s.Size]byte {
	t0 := hmacOf(key[:], input)
	return hmacOf(t0[:], []byte{1})
}

func kdf2(key [blake2s.Size]byte, input []byte) (t1, t2 [blake2s.Size]byte) {
	t0 := hmacOf(key[:], input)
	t1 = hmacOf(t0[:], []byte{1})
	t2 = hmacOf(t0[:], t1[:], []byte{2})
	return t1, t2
}

// open is AEAD-open with ChaCha20-Poly1305 and the counter 0: a nonce of
// 32 zero bits then the 64-bit little-endian counter, all zeros.
func open(key [blake2s.Size]byte, dst, sealed, ad []byte) error {
	aead, err := chacha20poly1305.New(key[:])
	if err != nil {
		return err
	}
	var nonce [chacha20poly1305.NonceSize]byte
	_, err = aead.Open(dst, nonce[:], sealed, ad)
	return err
}
