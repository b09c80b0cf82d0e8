package auth

import (
	"context"
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
type Watcher = filewatch.Watcher[[]filewatch.File, *Config]

// Watch loads the configuration (an error if it is bad: nothing starts
// without a valid one) and watches it until ctx ends.
func Watch(ctx context.Context, opts WatchOptions) (*Watcher, error) {
	src := filewatch.Source{Path: opts.Path, Every: opts.Every, Logger: opts.Logger, Registerer: opts.Registerer}
	log := src.Log()
	return filewatch.WatchFiles(ctx, src, filewatch.Options[[]filewatch.File, *Config]{
		What:  "workers",
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
		Metric:    "relay_workers",
		GaugeHelp: "Workers in the running workers configuration.",
	})
}
