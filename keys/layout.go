package keys

import (
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

// peerNameRE is the config's rule for peer names.
var peerNameRE = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)

// ValidPeerName reports whether name is a valid peer name: lowercase
// letters, digits and '-', up to 63, as the gateway config wants.
func ValidPeerName(name string) bool { return peerNameRE.MatchString(name) }

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
	if !ok || !ValidPeerName(peer) {
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
