package producers

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"strings"
)

// TokenPrefix starts every bearer token, so that one found in a file or a
// log is recognisable (and secret scanners can match it).
const TokenPrefix = "relaytok_"

// tokenBytes is a token's entropy: 256 bits, so its SHA-256 needs no salt
// or slow hash to resist guessing.
const tokenBytes = 32

// TokenHash is the SHA-256 of a bearer token, written "sha256:<hex>".
type TokenHash [sha256.Size]byte

const hashPrefix = "sha256:"

// String is the "sha256:<hex>" form.
func (h TokenHash) String() string { return hashPrefix + hex.EncodeToString(h[:]) }

// HashToken is the hash the producers file holds for token.
func HashToken(token string) TokenHash { return sha256.Sum256([]byte(token)) }

// ParseTokenHash parses "sha256:<64 hex digits>".
func ParseTokenHash(s string) (TokenHash, error) {
	rest, ok := strings.CutPrefix(strings.TrimSpace(s), hashPrefix)
	b, err := hex.DecodeString(rest)
	if !ok || err != nil || len(b) != sha256.Size {
		if strings.HasPrefix(s, TokenPrefix) {
			return TokenHash{}, errors.New("this is a token, not its hash: the file holds only sha256:… hashes; remove the token from the file and treat it as exposed")
		}
		return TokenHash{}, fmt.Errorf("token hash %q: want sha256: and 64 hex digits (relay producers token prints it)", abbreviate(s))
	}
	var h TokenHash
	copy(h[:], b)
	return h, nil
}

// NewToken makes a bearer token and its hash. The token is shown once to
// whoever made it; only the hash goes in the producers file.
func NewToken() (token string, hash TokenHash, err error) {
	b := make([]byte, tokenBytes)
	if _, err := rand.Read(b); err != nil {
		return "", TokenHash{}, fmt.Errorf("generating a token: %w", err)
	}
	token = TokenPrefix + base64.RawURLEncoding.EncodeToString(b)
	return token, HashToken(token), nil
}

// CheckToken reports whether s has the shape of a token NewToken makes;
// it says nothing of whether any producer holds it, and its error never
// holds s.
func CheckToken(s string) error {
	rest, ok := strings.CutPrefix(s, TokenPrefix)
	if !ok {
		return fmt.Errorf("not a relay token: it does not start with %s", TokenPrefix)
	}
	b, err := base64.RawURLEncoding.DecodeString(rest)
	if err != nil || len(b) != tokenBytes {
		return fmt.Errorf("not a relay token: want %s and %d base64url characters", TokenPrefix, base64.RawURLEncoding.EncodedLen(tokenBytes))
	}
	return nil
}

// NewFile writes a new producers file at path (mode 0600; an existing
// file is an error) holding one producer, name, with a new token allowed
// every action on queues, and returns the token: for a program that
// produces for itself, such as tunnel demo.
func NewFile(path, name string, queues ...string) (token string, err error) {
	token, hash, err := NewToken()
	if err != nil {
		return "", err
	}
	grants := map[string][]Action{}
	for _, q := range queues {
		grants[q] = Actions()
	}
	body := "# relay's producers file: who may enqueue, read, cancel, retry on which queue.\nproducers:\n" + Entry(name, nil, []TokenHash{hash}, grants)
	if _, err := Parse([]byte(body)); err != nil {
		return "", fmt.Errorf("writing producers file %s: %w", path, err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return "", fmt.Errorf("writing producers file: %w", err)
	}
	_, werr := f.WriteString(body)
	if err := errors.Join(werr, f.Close()); err != nil {
		_ = os.Remove(path)
		return "", fmt.Errorf("writing producers file %s: %w", path, err)
	}
	return token, nil
}
