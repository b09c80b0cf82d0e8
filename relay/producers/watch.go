package producers

import (
	"context"
	"crypto/sha256"
	"fmt"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tunnel-dev/tunnel/internal/filewatch"
	"github.com/tunnel-dev/tunnel/internal/yamlcheck"
)

// WatchOptions configure Watch.
type WatchOptions struct {
	// Path is the producers file (a mounted Secret's file is a symlink
	// kubelet swaps; its contents are compared, so the swap is seen).
	Path string
	// Every is how often the contents are compared (2s); Check forces a
	// look at once.
	Every  time.Duration
	Logger *slog.Logger
	// Registerer receives the reload metrics; nil registers none.
	Registerer prometheus.Registerer
}

// Watcher holds the producers configuration in force and reloads it when
// the file changes. Every request is judged by the configuration in force
// when it arrives, so a removed credential is refused from the next
// request on.
type Watcher = filewatch.Watcher[[]byte, *Config]

// Watch loads the file (an error if it is bad: relay does not start
// without a valid one) and watches it until ctx ends.
func Watch(ctx context.Context, opts WatchOptions) (*Watcher, error) {
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return filewatch.Watch(ctx, filewatch.Options[[]byte, *Config]{
		What:   "producers",
		Path:   opts.Path,
		Every:  opts.Every,
		Logger: log,
		Read: func() ([]byte, [32]byte, error) {
			data, err := yamlcheck.ReadFile(opts.Path, MaxFileSize)
			if err != nil {
				return nil, [32]byte{}, fmt.Errorf("producers file: %w", err)
			}
			return data, sha256.Sum256(data), nil
		},
		Parse: func(data []byte) (*Config, error) {
			c, err := Parse(data)
			if err != nil {
				return nil, yamlcheck.InFile(opts.Path, err)
			}
			return c, nil
		},
		Count: func(c *Config) int { return len(c.Producers) },
		Installed: func(_, c *Config, _ bool) {
			log.Info("producers loaded", "path", opts.Path, "producers", len(c.Producers))
			if len(c.Producers) == 0 {
				log.Warn("the producers file lists no producer: the API refuses every request", "path", opts.Path)
			}
		},
		Metric:     "relay_producers",
		GaugeHelp:  "Producers in the running producers configuration.",
		Registerer: opts.Registerer,
	})
}
