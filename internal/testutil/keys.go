package testutil

import (
	"testing"

	"github.com/tunnel-dev/tunnel/keys"
)

// Identity makes a new relay/1 identity (certificate and key) named name,
// or fails t.
func Identity(t testing.TB, name string) keys.Identity {
	t.Helper()
	certPEM, keyPEM, err := keys.GenerateIdentity(name)
	if err != nil {
		t.Fatalf("generating identity %q: %v", name, err)
	}
	id, err := keys.ParseIdentity(certPEM, keyPEM)
	if err != nil {
		t.Fatalf("parsing generated identity %q: %v", name, err)
	}
	return id
}

// PrivateKey makes a new WireGuard private key, or fails t.
func PrivateKey(t testing.TB) keys.PrivateKey {
	t.Helper()
	k, err := keys.GeneratePrivateKey()
	if err != nil {
		t.Fatalf("generating private key: %v", err)
	}
	return k
}
