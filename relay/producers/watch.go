package producers

import (
	"context"

	"github.com/tunnel-dev/tunnel/internal/filewatch"
)

// WatchOptions configure Watch: Path is the producers file or directory.
type WatchOptions = filewatch.Source

// Watcher holds the producers configuration in force and reloads it when
// its files change. Every request is judged by the configuration in force
// when it arrives, so a removed credential is refused from the next
// request on.
type Watcher = filewatch.Watcher[[]filewatch.File, *Config]

// Watch loads the file or directory (an error if it is bad: relay does
// not start without a valid one) and watches it until ctx ends.
func Watch(ctx context.Context, opts WatchOptions) (*Watcher, error) {
	log := opts.Log()
	return filewatch.WatchFiles(ctx, opts, filewatch.Options[[]filewatch.File, *Config]{
		What:  "producers",
		Parse: parseFiles,
		Count: func(c *Config) int { return len(c.Producers) },
		Installed: func(_, c *Config, _ bool) {
			log.Info("producers loaded", "path", opts.Path, "producers", len(c.Producers))
			if len(c.Producers) == 0 {
				log.Warn("the producers configuration lists no producer: the API refuses every request", "path", opts.Path)
			}
		},
		Metric:    "relay_producers",
		GaugeHelp: "Producers in the running producers configuration.",
	})
}
