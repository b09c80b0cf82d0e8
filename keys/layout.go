package keys

import (
	"bufio"
	"bytes"
	"fmt"
	"regexp"
	"strings"
)

// A key store holds what one gateway owns, one item per file (or per key
// of a Kubernetes Secret, which is mounted as files):
//
//	private.key        the gateway's WireGuard private key
//	next.key           a staged private key, present only mid-rotation
//	peer.<name>.pub    the peer key file of peer <name>: its public key,
//	                   and during a rotation its successor on a second line
//
// The gateway's config points interface.privateKeyFile at private.key and
// each peer's publicKeyFile at its peer.<name>.pub.
const (
	// NextKeyFile is the staged successor of PrivateKeyFile.
	NextKeyFile = "next.key"

	peerFilePrefix = "peer."
	peerFileSuffix = ".pub"
)

// nameRE is an RFC 1123 label.
var nameRE = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)

// ValidName reports whether name is an RFC 1123 label: lowercase letters,
// digits and '-', up to 63, starting and ending with a letter or digit.
// It is the rule for the gateway config's peer and rule names, and so for
// the peer part of a key file's name, and a Kubernetes namespace's.
func ValidName(name string) bool { return nameRE.MatchString(name) }

// PeerKeyFile is the name of peer's key file in a key store:
// "peer.<name>.pub".
func PeerKeyFile(peer string) string { return peerFilePrefix + peer + peerFileSuffix }

// PeerOfKeyFile returns the peer a key file name belongs to, if name is
// "peer.<name>.pub" with a valid peer name.
func PeerOfKeyFile(name string) (string, bool) {
	rest, ok := strings.CutPrefix(name, peerFilePrefix)
	if !ok {
		return "", false
	}
	peer, ok := strings.CutSuffix(rest, peerFileSuffix)
	if !ok || !ValidName(peer) {
		return "", false
	}
	return peer, true
}

// FormatPeerKeys renders a peer key file: one base64 public key per line,
// the active key first and a staged successor second.
func FormatPeerKeys(ks ...PublicKey) []byte {
	var b strings.Builder
	for _, k := range ks {
		b.WriteString(k.String())
		b.WriteByte('\n')
	}
	return []byte(b.String())
}

// MaxPeerKeys is how many keys a peer key file may hold: the peer's key
// and, during a rotation, its successor.
const MaxPeerKeys = 2

// ParsePeerKeys parses the contents of a peer key file, as FormatPeerKeys
// writes it: one base64 public key per line, the active one first and an
// optional successor second. Blank lines and lines starting with # are
// ignored.
func ParsePeerKeys(b []byte) (active PublicKey, next *PublicKey, err error) {
	var ks []PublicKey
	sc := bufio.NewScanner(bytes.NewReader(b))
	line := 0
	for sc.Scan() {
		line++
		s := strings.TrimSpace(sc.Text())
		if s == "" || strings.HasPrefix(s, "#") {
			continue
		}
		k, err := ParsePublicKey(s)
		if err != nil {
			return active, nil, fmt.Errorf("line %d: %w", line, err)
		}
		for _, prev := range ks {
			if prev == k {
				return active, nil, fmt.Errorf("line %d: the same key twice", line)
			}
		}
		ks = append(ks, k)
	}
	switch {
	case len(ks) == 0:
		return active, nil, fmt.Errorf("no key in the file")
	case len(ks) > MaxPeerKeys:
		return active, nil, fmt.Errorf("%d keys; a peer has one, and a successor during a rotation", len(ks))
	}
	if len(ks) == 2 {
		next = &ks[1]
	}
	return ks[0], next, nil
}
