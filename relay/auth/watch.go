package auth

import (
	"context"
	"crypto/sha256"
	"fmt"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tunnel-dev/tunnel/internal/filewatch"
	"github.com/tunnel-dev/tunnel/keys"
)

// WatchOptions configure Watch.
type WatchOptions struct {
	// Path is the workers file or directory.
	Path string
	// Every is how often the contents are compared (2s); zero or less
	// means the default, and Check forces a look at once.
	Every time.Duration
	// OnChange is called after a new configuration took effect, with the
	// pins it no longer has, so connections using them can be closed.
	OnChange func(c *Config, removed []keys.Pin)
	Logger   *slog.Logger
	// Registerer receives the reload metrics; nil registers none.
	Registerer prometheus.Registerer
}

// Watcher holds the current workers configuration and reloads it when the
// files change.
type Watcher = filewatch.Watcher[[]file, *Config]

// Watch loads the configuration (an error if it is bad: nothing starts
// without a valid one) and watches it until ctx ends.
func Watch(ctx context.Context, opts WatchOptions) (*Watcher, error) {
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return filewatch.Watch(ctx, filewatch.Options[[]file, *Config]{
		What:   "workers",
		Path:   opts.Path,
		Every:  opts.Every,
		Logger: log,
		Read: func() ([]file, [32]byte, error) {
			files, err := readFiles(opts.Path)
			return files, hashFiles(files), err
		},
		Parse: parseFiles,
		Count: func(c *Config) int { return len(c.Workers) },
		Installed: func(old, c *Config, first bool) {
			if first {
				log.Info("workers loaded", "path", opts.Path, "workers", len(c.Workers))
				return
			}
			var removed []keys.Pin
			for p := range old.byPin {
				if _, ok := c.byPin[p]; !ok {
					removed = append(removed, p)
				}
			}
			log.Info("workers reloaded", "path", opts.Path, "workers", len(c.Workers), "pins_removed", len(removed))
			if opts.OnChange != nil {
				opts.OnChange(c, removed)
			}
		},
		Metric:     "relay_workers",
		GaugeHelp:  "Workers in the running workers configuration.",
		Registerer: opts.Registerer,
	})
}

// hashFiles hashes the names and contents of files.
func hashFiles(files []file) [32]byte {
	h := sha256.New()
	for _, f := range files {
		fmt.Fprintf(h, "%d:%s%d:", len(f.name), f.name, len(f.data))
		h.Write(f.data)
	}
	var out [32]byte
	copy(out[:], h.Sum(nil))
	return out
}
