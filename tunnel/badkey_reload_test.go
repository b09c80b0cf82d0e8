package tunnel_test

import (
	"context"
	"encoding/base64"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/tunnel-dev/tunnel/internal/pinger"
	"github.com/tunnel-dev/tunnel/internal/testutil"
	"github.com/tunnel-dev/tunnel/keys"
	"github.com/tunnel-dev/tunnel/tunnel"
)

// TestReloadRefusesBadKeys: a key file replaced by a weak or malformed key
// (all zeros, the wrong length, not base64) is refused by the watcher;
// the gateway keeps its running keys and traffic keeps flowing.
func TestReloadRefusesBadKeys(t *testing.T) {
	eks, aks, _ := filePair(t)
	p := pinger.Start(t, forwardAddr(t, aks.gw, "relay"), 10*time.Millisecond)
	testutil.Eventually(t, 10*time.Second, "traffic through the tunnel", func() bool { return p.Got.Load() > 5 })

	var logs testutil.Buffer
	w := &tunnel.Watcher{Gateway: eks.gw, Path: eks.cfg, Every: 20 * time.Millisecond, Logger: logs.Logger()}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go w.Run(ctx)

	zeros := base64.StdEncoding.EncodeToString(make([]byte, 32))
	short := base64.StdEncoding.EncodeToString(make([]byte, 16))
	goodPriv, err := os.ReadFile(eks.keyFile())
	if err != nil {
		t.Fatal(err)
	}
	goodPeer, err := os.ReadFile(eks.peerFile())
	if err != nil {
		t.Fatal(err)
	}
	pub := eks.gw.Status().PublicKey
	for _, tc := range []struct {
		name, file, body string
	}{
		{"peer key all zeros", eks.peerFile(), zeros + "\n"},
		{"peer key 16 bytes", eks.peerFile(), short + "\n"},
		{"peer key not base64", eks.peerFile(), "not-a-key!\n"},
		{"private key all zeros", eks.keyFile(), zeros + "\n"},
		{"private key 16 bytes", eks.keyFile(), short + "\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := logs.Count("keeping the running one")
			mode := os.FileMode(0o644)
			if tc.file == eks.keyFile() {
				mode = 0o600
			}
			if err := keys.WriteFile(tc.file, []byte(tc.body), mode); err != nil {
				t.Fatal(err)
			}
			testutil.Eventually(t, 5*time.Second, "the bad key to be refused", func() bool {
				return logs.Count("keeping the running one") > before
			})
			st := eks.gw.Status()
			if st.PublicKey != pub || len(st.Peers) != 1 || st.Peers[0].PublicKey != aks.pub.String() {
				t.Fatalf("a refused key changed the gateway: key %s, peers %+v", st.PublicKey, st.Peers)
			}
			got := p.Got.Load()
			testutil.Eventually(t, 5*time.Second, "traffic to keep flowing", func() bool { return p.Got.Load() > got+5 })
			// Put the good key back before the next case.
			if err := keys.WriteFile(eks.keyFile(), goodPriv, 0o600); err != nil {
				t.Fatal(err)
			}
			if err := keys.WriteFile(eks.peerFile(), goodPeer, 0o644); err != nil {
				t.Fatal(err)
			}
		})
	}
	if logs.Contains(strings.TrimSpace(string(goodPriv))) {
		t.Error("the private key appeared in the watcher's log")
	}
}

// A key file rewritten after the gateway started but before its watcher
// did is still seen: the watcher's first check loads what is on disk
// instead of taking it as the baseline (it once did, and missed the
// change until the next one).
func TestWatcherSeesChangeBeforeItStarted(t *testing.T) {
	eks, _, _ := filePair(t)
	zeros := base64.StdEncoding.EncodeToString(make([]byte, 32))
	if err := keys.WriteFile(eks.peerFile(), []byte(zeros+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	var logs testutil.Buffer
	w := &tunnel.Watcher{Gateway: eks.gw, Path: eks.cfg, Every: time.Hour, Logger: logs.Logger()}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan struct{})
	go func() { w.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()
	testutil.Eventually(t, 5*time.Second, "the bad key written before the watcher started to be refused", func() bool {
		return logs.Contains("keeping the running one")
	})
}
