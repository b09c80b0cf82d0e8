package filewatch

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tunnel-dev/tunnel/internal/fileread"
	"github.com/tunnel-dev/tunnel/internal/yamlcheck"
)

// Size caps of a configuration read by ReadFiles: a file larger than
// MaxFileSize, or a directory whose files add up to more than MaxDirSize,
// is refused before anything is parsed.
const (
	MaxFileSize = 1 << 20
	MaxDirSize  = 8 << 20
)

// File is one file of a configuration: its path and contents.
type File struct {
	Name string
	Data []byte
}

// ReadFiles reads path, a file, or every *.yaml and *.yml file of the
// directory path in name order (hidden files skipped, symlinks followed:
// a mounted ConfigMap's or Secret's files are links into ..data). what
// names the configuration in errors ("workers").
func ReadFiles(what, path string) ([]File, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("reading %s file: %w", what, err)
	}
	if !fi.IsDir() {
		b, err := fileread.Read(path, MaxFileSize)
		if err != nil {
			return nil, fmt.Errorf("reading %s file: %w", what, err)
		}
		return []File{{path, b}}, nil
	}
	ents, err := os.ReadDir(path)
	if err != nil {
		return nil, fmt.Errorf("reading %s directory: %w", what, err)
	}
	var files []File
	total := 0
	for _, e := range ents {
		n := e.Name()
		if strings.HasPrefix(n, ".") || !(strings.HasSuffix(n, ".yaml") || strings.HasSuffix(n, ".yml")) {
			continue
		}
		p := filepath.Join(path, n)
		if fi, err := os.Stat(p); err != nil || !fi.Mode().IsRegular() {
			continue
		}
		b, err := fileread.Read(p, MaxFileSize)
		if err != nil {
			return nil, fmt.Errorf("reading %s directory: %w", what, err)
		}
		if total += len(b); total > MaxDirSize {
			return nil, fmt.Errorf("reading %s directory %s: its files add up to more than the cap of %d bytes (at %s)", what, path, MaxDirSize, n)
		}
		files = append(files, File{p, b})
	}
	if len(files) == 0 {
		return nil, fmt.Errorf("%s directory %s holds no .yaml or .yml file", what, path)
	}
	return files, nil
}

// Digest hashes the names and contents of files: an unchanged digest
// means an unchanged configuration.
func Digest(files []File) [32]byte {
	h := sha256.New()
	for _, f := range files {
		fmt.Fprintf(h, "%d:%s%d:", len(f.Name), f.Name, len(f.Data))
		h.Write(f.Data)
	}
	var out [32]byte
	h.Sum(out[:0])
	return out
}

// ParseYAML parses every file's YAML document into an R and hands it to
// each with the file's name, reporting every problem of every file at once:
// a yamlcheck.Errors, each problem naming its file, line and field. each
// may remember what earlier files held, so that a name or key given in two
// files is refused naming both.
func ParseYAML[R any](files []File, opts yamlcheck.Options, each func(p *yamlcheck.Parser, file string, raw *R)) error {
	var all yamlcheck.Errors
	for _, f := range files {
		_, err := yamlcheck.ParseWith(f.Data, opts, func(p *yamlcheck.Parser, raw *R) *struct{} {
			each(p, f.Name, raw)
			return &struct{}{}
		})
		var es yamlcheck.Errors
		if errors.As(yamlcheck.InFile(f.Name, err), &es) {
			all = append(all, es...)
		} else if err != nil {
			return err
		}
	}
	if len(all) > 0 {
		return all
	}
	return nil
}

// Source is where a configuration of files lives and how it is watched:
// what relay's workers and producers watchers share.
type Source struct {
	// Path is the file, or a directory of *.yaml and *.yml files. A
	// mounted Secret's file is a symlink kubelet swaps; contents are
	// compared, so the swap is seen.
	Path string
	// Every is how often the contents are compared (DefaultEvery when
	// zero or less); Check forces a look at once.
	Every  time.Duration
	Logger *slog.Logger
	// Registerer receives the reload metrics; nil registers none.
	Registerer prometheus.Registerer
}

// Log is the source's logger, or one that discards.
func (s Source) Log() *slog.Logger {
	if s.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return s.Logger
}

// WatchFiles is Watch for a configuration read with ReadFiles from src:
// opts gives what is particular to it (What, Parse, Count, Installed,
// Metric, GaugeHelp); the rest comes from src.
func WatchFiles[T any](ctx context.Context, src Source, opts Options[[]File, T]) (*Watcher[[]File, T], error) {
	opts.Path, opts.Every, opts.Logger, opts.Registerer = src.Path, src.Every, src.Log(), src.Registerer
	what := opts.What
	opts.Read = func() ([]File, [32]byte, error) {
		files, err := ReadFiles(what, src.Path)
		return files, Digest(files), err
	}
	return Watch(ctx, opts)
}
