package buildinfo

import (
	"fmt"
	"runtime/debug"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
)

// Set at link time by LDFlags; empty in a plain `go build` or a test.
var (
	version  string
	revision string
)

// pkgPath is this package's import path, the target of -ldflags -X.
const pkgPath = "github.com/tunnel-dev/tunnel/internal/buildinfo"

// Unknown is the version of a build that recorded none.
const Unknown = "dev"

// LDFlags returns the -ldflags arguments that stamp version and revision
// into a binary.
func LDFlags(version, revision string) string {
	return fmt.Sprintf("-X %s.version=%s -X %s.revision=%s", pkgPath, version, pkgPath, revision)
}

// Info describes one build.
type Info struct {
	Version   string // v1.2.3, v1.2.3-4-gabcdef0-dirty (git describe), or dev
	Revision  string // the commit, or "" if unknown
	GoVersion string // go1.26.8
}

// Read returns this binary's build.
func Read() Info {
	bi, _ := debug.ReadBuildInfo()
	return read(version, revision, bi)
}

// read prefers the stamped values and falls back to what Go recorded.
func read(version, revision string, bi *debug.BuildInfo) Info {
	info := Info{Version: version, Revision: revision}
	if bi != nil {
		info.GoVersion = bi.GoVersion
		if info.Version == "" && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
			info.Version = bi.Main.Version
		}
		if info.Revision == "" {
			var modified bool
			for _, s := range bi.Settings {
				switch s.Key {
				case "vcs.revision":
					info.Revision = s.Value
				case "vcs.modified":
					modified = s.Value == "true"
				}
			}
			if modified && info.Revision != "" {
				info.Revision += "-dirty"
			}
		}
	}
	if info.Version == "" {
		info.Version = Unknown
	}
	return info
}

// String is what --version prints: "v1.2.3 (revision abcdef0, go1.26.8)".
func (i Info) String() string {
	var parts []string
	if i.Revision != "" {
		parts = append(parts, "revision "+i.Revision)
	}
	if i.GoVersion != "" {
		parts = append(parts, i.GoVersion)
	}
	if len(parts) == 0 {
		return i.Version
	}
	return i.Version + " (" + strings.Join(parts, ", ") + ")"
}

// Collector is the gauge NAMESPACE_build_info{version,revision,goversion},
// always 1: join it to other series to label them with the build.
func (i Info) Collector(namespace string) prometheus.Collector {
	return prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Namespace: namespace,
		Name:      "build_info",
		Help:      "Always 1; the labels say which build is running.",
		ConstLabels: prometheus.Labels{
			"version":   i.Version,
			"revision":  i.Revision,
			"goversion": i.GoVersion,
		},
	}, func() float64 { return 1 })
}
