package tunnel

import (
	"context"
	"crypto/sha256"
	"errors"
	"log/slog"
	"maps"
	"os"
	"slices"
	"sync"
	"time"

	"github.com/tunnel-dev/tunnel/tunnel/config"
)

// Watcher reloads a gateway when its configuration file, or a key file the
// configuration names, changes. It compares contents, not modification
// times or inodes, so it sees the atomic symlink swap kubelet makes when a
// mounted ConfigMap or Secret is updated. A file that fails to parse or
// validate is refused with a log line, and the running configuration
// stays.
type Watcher struct {
	Gateway *Gateway
	// Path is the configuration file.
	Path string
	// Every is how often files are checked; default 1s.
	Every  time.Duration
	Logger *slog.Logger

	once    sync.Once
	trigger chan struct{}
	seen    map[string][32]byte
}

func (w *Watcher) init() { w.once.Do(func() { w.trigger = make(chan struct{}, 1) }) }

// Trigger asks for a reload now (SIGHUP), even if no file changed: that
// retries a rule a reload could not start, once its cause is fixed.
func (w *Watcher) Trigger() {
	w.init()
	select {
	case w.trigger <- struct{}{}:
	default:
	}
}

// Run checks until ctx is done. It returns only once a reload it began
// has finished, so a caller that waits for it knows none is in flight.
func (w *Watcher) Run(ctx context.Context) {
	if w.Every <= 0 {
		w.Every = time.Second
	}
	if w.Logger == nil {
		w.Logger = slog.New(slog.DiscardHandler)
	}
	w.init()
	// The first check reloads from what is on disk now: a file rewritten
	// between the gateway's start and this one would otherwise be the
	// baseline, and its change never seen. Nothing changed is nothing to
	// apply.
	w.check(ctx, true)
	t := time.NewTicker(w.Every)
	defer t.Stop()
	for {
		force := false
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-w.trigger:
			force = true
		}
		w.check(ctx, force)
	}
}

// check reloads if any watched file's contents changed, or if force.
func (w *Watcher) check(ctx context.Context, force bool) {
	now := w.hashes(w.Gateway.Config())
	if !force && maps.Equal(now, w.seen) {
		return
	}
	c, err := config.Load(w.Path)
	if err != nil {
		w.Logger.Error("configuration changed but is not valid; keeping the running one", "file", w.Path, "err", err)
		w.seen = now // say so once per change, not once a second
		return
	}
	ch, err := w.Gateway.Reload(ctx, c)
	// What the new configuration names is watched from now on, as it was
	// before loading: a file rewritten since is a change the next check
	// sees. A file only the new configuration names has no earlier hash,
	// so the next check reads it again.
	w.seen = map[string][32]byte{}
	for _, f := range watchedFiles(w.Path, c) {
		w.seen[f] = now[f]
	}
	switch {
	case errors.Is(err, ErrNeedsRestart), errors.Is(err, ErrBadConfig):
		w.Logger.Error("configuration changed but cannot be applied; keeping the running one", "file", w.Path, "err", err)
	case err != nil:
		w.Logger.Error("configuration reloaded with errors", "file", w.Path, "changes", ch.String(), "err", err)
	case ch.Empty():
		w.Logger.Debug("configuration files changed; nothing to apply", "file", w.Path)
	default:
		w.Logger.Info("configuration reloaded", "file", w.Path, "changes", ch.String(),
			"unchanged_peers", ch.UnchangedPeers, "unchanged_rules", ch.UnchangedRules)
	}
}

// hashes reads the configuration file and every key file it names. A file
// that cannot be read hashes as zeros, so its coming back is a change.
func (w *Watcher) hashes(c *config.Config) map[string][32]byte {
	h := map[string][32]byte{}
	for _, f := range watchedFiles(w.Path, c) {
		b, err := os.ReadFile(f)
		if err != nil {
			h[f] = [32]byte{}
			continue
		}
		h[f] = sha256.Sum256(b)
	}
	return h
}

// watchedFiles are the configuration file and the key files c names.
func watchedFiles(path string, c *config.Config) []string {
	files := []string{path}
	if c != nil {
		files = append(files, c.Interface.PrivateKeyFile)
		for _, p := range c.Peers {
			files = append(files, p.PublicKeyFile, p.PresharedKeyFile)
		}
	}
	return slices.DeleteFunc(files, func(f string) bool { return f == "" })
}
