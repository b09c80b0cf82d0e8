package keys

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"strings"

	"golang.org/x/crypto/curve25519"
)

// KeyLen is the length of a WireGuard key in bytes.
const KeyLen = 32

// PrivateKey is a WireGuard (Curve25519) private key. Its String and
// LogValue forms never show the key.
type PrivateKey [KeyLen]byte

// PublicKey is a WireGuard public key, printed in the usual base64 form.
type PublicKey [KeyLen]byte

// GeneratePrivateKey returns a new clamped Curve25519 private key.
func GeneratePrivateKey() (PrivateKey, error) {
	var k PrivateKey
	if _, err := rand.Read(k[:]); err != nil {
		return PrivateKey{}, fmt.Errorf("reading random bytes for a private key: %w", err)
	}
	k.clamp()
	return k, nil
}

func (k *PrivateKey) clamp() {
	k[0] &= 248
	k[31] = (k[31] & 127) | 64
}

// Public derives the public key.
func (k PrivateKey) Public() PublicKey {
	var pub PublicKey
	out, err := curve25519.X25519(k[:], curve25519.Basepoint)
	if err != nil {
		// X25519 with the base point only fails for a zero output, which a
		// clamped scalar cannot produce; parsing already refused zero keys.
		return PublicKey{}
	}
	copy(pub[:], out)
	return pub
}

// IsZero reports whether the key is all zeros.
func (k PrivateKey) IsZero() bool {
	var zero PrivateKey
	return subtle.ConstantTimeCompare(k[:], zero[:]) == 1
}

// String never reveals the key.
func (k PrivateKey) String() string { return "(private key hidden)" }

// GoString never reveals the key, even with %#v.
func (k PrivateKey) GoString() string { return k.String() }

// LogValue keeps the key out of structured logs.
func (k PrivateKey) LogValue() slog.Value { return slog.StringValue(k.String()) }

// Format keeps the key out of every fmt verb.
func (k PrivateKey) Format(f fmt.State, _ rune) { _, _ = f.Write([]byte(k.String())) }

// Base64 returns the key in the form key files hold. Only writers of key
// files should call it.
func (k PrivateKey) Base64() string { return base64.StdEncoding.EncodeToString(k[:]) }

// UAPIHex returns the key in the hex form wireguard-go's configuration
// protocol expects. Only the code that configures a device should call it.
func (k PrivateKey) UAPIHex() string { return hex.EncodeToString(k[:]) }

// String is the standard base64 form.
func (k PublicKey) String() string { return base64.StdEncoding.EncodeToString(k[:]) }

// UAPIHex returns the key in wireguard-go's configuration form.
func (k PublicKey) UAPIHex() string { return hex.EncodeToString(k[:]) }

// IsZero reports whether the key is all zeros.
func (k PublicKey) IsZero() bool { return k == PublicKey{} }

// Fingerprint is a short form for logs and status tables: the last eight
// characters of the base64 key, as in "…Xk3AbC=". It is enough to tell keys
// apart by eye, not to identify one.
func (k PublicKey) Fingerprint() string {
	s := k.String()
	return "…" + s[len(s)-8:]
}

// MarshalText lets public keys appear in YAML and JSON as base64.
func (k PublicKey) MarshalText() ([]byte, error) { return []byte(k.String()), nil }

// UnmarshalText parses the base64 form, with ParsePublicKey's checks.
func (k *PublicKey) UnmarshalText(b []byte) error {
	p, err := ParsePublicKey(string(b))
	if err != nil {
		return err
	}
	*k = p
	return nil
}

// ErrWeakKey is returned for keys that parse but must not be used.
var ErrWeakKey = errors.New("weak key")

func decodeKey(s string) ([KeyLen]byte, error) {
	var k [KeyLen]byte
	s = strings.TrimSpace(s)
	if s == "" {
		return k, errors.New("empty key")
	}
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		return k, fmt.Errorf("not base64 (a WireGuard key is 44 base64 characters, as `wg genkey` prints)")
	}
	if len(b) != KeyLen {
		return k, fmt.Errorf("decodes to %d bytes, want %d", len(b), KeyLen)
	}
	copy(k[:], b)
	return k, nil
}

// ParsePrivateKey parses a base64 private key. It refuses all-zero keys and
// keys whose public half is degenerate. The error never contains the input.
func ParsePrivateKey(s string) (PrivateKey, error) {
	raw, err := decodeKey(s)
	if err != nil {
		return PrivateKey{}, fmt.Errorf("parsing private key: %w", err)
	}
	k := PrivateKey(raw)
	if k.IsZero() {
		return PrivateKey{}, fmt.Errorf("parsing private key: %w: all zeros", ErrWeakKey)
	}
	// wg(8) accepts unclamped scalars and clamps them; so do we, so that
	// the public key we derive is the one peers see.
	k.clamp()
	if k.Public().IsZero() {
		return PrivateKey{}, fmt.Errorf("parsing private key: %w: degenerate public key", ErrWeakKey)
	}
	return k, nil
}

// ParsePublicKey parses a base64 public key and refuses the all-zero key
// (and other low-order points, whose shared secret would be zero).
func ParsePublicKey(s string) (PublicKey, error) {
	raw, err := decodeKey(s)
	if err != nil {
		return PublicKey{}, fmt.Errorf("parsing public key %q: %w", abbreviate(s), err)
	}
	k := PublicKey(raw)
	if isLowOrder(k) {
		return PublicKey{}, fmt.Errorf("parsing public key %s: %w: a low-order point (all zeros or similar)", k, ErrWeakKey)
	}
	return k, nil
}

// isLowOrder reports whether multiplying the point by a clamped scalar gives
// zero, which is what every low-order point does.
func isLowOrder(k PublicKey) bool {
	var probe [KeyLen]byte
	probe[0] = 8
	probe[31] = 64
	_, err := curve25519.X25519(probe[:], k[:])
	return err != nil
}

// abbreviate keeps error messages short when someone pastes a whole file
// into a public-key field.
func abbreviate(s string) string {
	s = strings.TrimSpace(s)
	if len(s) > 60 {
		return s[:57] + "..."
	}
	return s
}

func randRead(b []byte) (int, error) { return rand.Read(b) }
