package tunneltest

import (
	"bytes"
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tunnel-dev/tunnel/internal/pinger"
	"github.com/tunnel-dev/tunnel/internal/testutil"
	"github.com/tunnel-dev/tunnel/keys"
	"github.com/tunnel-dev/tunnel/keys/rotate"
	"github.com/tunnel-dev/tunnel/keys/store"
)

// A malformed or weak key written into a store: the gateway's reload
// refuses it, says why in its log and keeps its running key (traffic still
// flows), and rotate refuses to start from that store, naming the item,
// and writes nothing.
func TestBadKeyInStore(t *testing.T) {
	p := startPair(t)
	ping := pinger.Start(t, p.Forward(t), 10*time.Millisecond)
	ping.Flowing(t, 10*time.Second, 5, "before")
	for _, tc := range []struct {
		name, side, item, value, why string
	}{
		{"all-zero private key", "aks", keys.PrivateKeyFile, strings.Repeat("A", 43) + "=\n", "weak key: all zeros"},
		{"short private key", "aks", keys.PrivateKeyFile, "AAAAAAAAAAAAAAAA\n", "decodes to 12 bytes, want 32"},
		{"private key not base64", "eks", keys.PrivateKeyFile, "this is not a key!\n", "not base64"},
		{"all-zero peer key", "eks", "peer.aks.pub", strings.Repeat("A", 43) + "=\n", "weak key"},
		{"garbled peer key file", "eks", "peer.aks.pub", "ssh-ed25519 AAAA\n", "not base64"},
		{"bad next key", "aks", keys.NextKeyFile, "AAAA\n", "decodes to 3 bytes"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			side := p.AKS
			if tc.side == "eks" {
				side = p.EKS
			}
			running := side.PublicKey()
			orig := load(t, side.Store())
			set(t, side.Store(), map[string][]byte{tc.item: []byte(tc.value)})
			t.Cleanup(func() {
				if old, ok := orig.Items[tc.item]; ok {
					set(t, side.Store(), map[string][]byte{tc.item: old})
				} else {
					set(t, side.Store(), nil, tc.item)
				}
			})
			if tc.item != keys.NextKeyFile { // the gateway never reads next.key
				testutil.Eventually(t, 5*time.Second, "the gateway to refuse the bad key in its log", func() bool {
					return side.Logs.Contains("cannot be applied; keeping the running one") && side.Logs.Contains(tc.why)
				})
			}
			if side.PublicKey() != running {
				t.Fatalf("the gateway changed its key to %s", side.PublicKey().Fingerprint())
			}
			ping.Flowing(t, 5*time.Second, 10, "with a bad key in the store")
			if s := strings.TrimSpace(tc.value); store.IsSecret(tc.item) && side.Logs.Contains(s) {
				t.Fatal("the gateway logged the bad private key itself")
			}

			before := []store.Version{load(t, p.AKS.Store()).Version, load(t, p.EKS.Store()).Version}
			var out bytes.Buffer
			_, err := rotation(t, p.AKS, p.EKS, &out).Run(context.Background())
			if !errors.Is(err, rotate.ErrBadKey) || !strings.Contains(err.Error(), tc.item) || !strings.Contains(err.Error(), tc.why) || !strings.Contains(err.Error(), side.KeyDir) {
				t.Fatalf("rotate: %v", err)
			}
			if after := []store.Version{load(t, p.AKS.Store()).Version, load(t, p.EKS.Store()).Version}; !slices.Equal(before, after) {
				t.Fatal("rotate wrote to a store with a bad key")
			}
		})
	}
}
