package config

import (
	"fmt"
	"os"
	"slices"

	"github.com/tunnel-dev/tunnel/keys"
)

// ReadPeerKeyFile reads a peer key file: one base64 public key per line,
// the active one first and an optional successor second. Blank lines and
// lines starting with # are ignored.
func ReadPeerKeyFile(path string) (active keys.PublicKey, next *keys.PublicKey, err error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return active, nil, fmt.Errorf("reading peer key file: %w", err)
	}
	return keys.ParsePeerKeys(b)
}

// ResolveFiles reads the peer key files a configuration names, filling in
// Key and NextKey. Errors name the field.
func ResolveFiles(c *Config) error {
	var errs Errors
	seen := map[keys.PublicKey]string{}
	for i := range c.Peers {
		p := &c.Peers[i]
		if p.PublicKeyFile != "" {
			active, next, err := ReadPeerKeyFile(p.PublicKeyFile)
			if err != nil {
				errs = append(errs, &FieldError{Path: fmt.Sprintf("peers[%d].publicKeyFile", i), Msg: fmt.Sprintf("%s: %v", p.PublicKeyFile, err)})
				continue
			}
			p.Key, p.NextKey = active, next
			p.PublicKey = active.String()
			p.NextPublicKey = ""
			if next != nil {
				p.NextPublicKey = next.String()
			}
		}
		for _, k := range p.keys() {
			if other, dup := seen[k]; dup && other != p.Name {
				errs = append(errs, &FieldError{Path: fmt.Sprintf("peers[%d]", i), Msg: fmt.Sprintf("key %s is also peer %q's", k.Fingerprint(), other)})
			}
			seen[k] = p.Name
		}
	}
	if len(errs) > 0 {
		return errs
	}
	return nil
}

// keys lists the keys a peer may use: its own and a staged successor.
func (p *Peer) keys() []keys.PublicKey {
	if p.NextKey != nil {
		return []keys.PublicKey{p.Key, *p.NextKey}
	}
	return []keys.PublicKey{p.Key}
}

// Keys lists the keys a peer may use: its own and a staged successor.
func (p *Peer) Keys() []keys.PublicKey { return p.keys() }

// CheckKeys reads this gateway's private key and each peer's preshared
// key file as the gateway will, and checks that no peer has this
// gateway's own key; it returns this gateway's public key. The error is
// an Errors naming each field with a problem.
func CheckKeys(c *Config) (keys.PublicKey, error) {
	var errs Errors
	k, err := keys.LoadPrivateKey(c.Interface.PrivateKeyFile)
	if err != nil {
		errs = append(errs, &FieldError{Path: "interface.privateKeyFile", Msg: fmt.Sprintf("%v (use --offline to check the file alone)", err)})
	}
	var pub keys.PublicKey
	if err == nil {
		pub = k.Public()
	}
	for i, p := range c.Peers {
		if err == nil && slices.Contains(p.Keys(), pub) {
			errs = append(errs, &FieldError{Path: fmt.Sprintf("peers[%d]", i), Msg: fmt.Sprintf("peer %q has this gateway's own public key", p.Name)})
		}
		if p.PresharedKeyFile != "" {
			if _, perr := keys.LoadPresharedKey(p.PresharedKeyFile); perr != nil {
				errs = append(errs, &FieldError{Path: fmt.Sprintf("peers[%d].presharedKeyFile", i), Msg: perr.Error()})
			}
		}
	}
	if len(errs) > 0 {
		return pub, errs
	}
	return pub, nil
}
