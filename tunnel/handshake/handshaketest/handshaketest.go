// Package handshaketest gives tests a WireGuard handshake initiation
// captured from wireguard-go (tunnel/handshake's tests capture it: go test
// ./tunnel/handshake -run TestInitiatorKey -update), with the test-only
// keys it was made with.
package handshaketest

import (
	"encoding/hex"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/tunnel-dev/tunnel/keys"
)

// Captured is a captured initiation and its keys.
type Captured struct {
	Responder keys.PrivateKey // the key it is encrypted to
	Initiator keys.PublicKey  // the key that sent it
	Msg       []byte
}

// File is where the capture is kept.
func File() string {
	_, here, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(here), "..", "testdata", "initiation.txt")
}

// Load reads the capture.
func Load(t testing.TB) Captured {
	t.Helper()
	b, err := os.ReadFile(File())
	if err != nil {
		t.Fatal(err)
	}
	var c Captured
	for line := range strings.Lines(string(b)) {
		field, value, _ := strings.Cut(strings.TrimSpace(line), " ")
		switch field {
		case "responder-private":
			c.Responder, err = keys.ParsePrivateKey(value)
		case "initiator-public":
			c.Initiator, err = keys.ParsePublicKey(value)
		case "message":
			c.Msg, err = hex.DecodeString(value)
		}
		if err != nil {
			t.Fatalf("%s: %s: %v", File(), field, err)
		}
	}
	if len(c.Msg) != 148 {
		t.Fatalf("%s: the message is %d bytes, not an initiation's 148", File(), len(c.Msg))
	}
	return c
}
