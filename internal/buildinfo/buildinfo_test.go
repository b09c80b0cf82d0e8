package buildinfo

import (
	"runtime/debug"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

func TestRead(t *testing.T) {
	vcs := &debug.BuildInfo{
		GoVersion: "go1.26.8",
		Main:      debug.Module{Path: "github.com/tunnel-dev/tunnel", Version: "(devel)"},
		Settings: []debug.BuildSetting{
			{Key: "vcs.revision", Value: "0123456789abcdef"},
			{Key: "vcs.modified", Value: "true"},
		},
	}
	tests := []struct {
		name              string
		version, revision string
		bi                *debug.BuildInfo
		want              Info
		str               string
	}{
		{"stamped", "v1.2.3-4-gabcdef0", "abcdef0123", vcs,
			Info{"v1.2.3-4-gabcdef0", "abcdef0123", "go1.26.8"}, "v1.2.3-4-gabcdef0 (revision abcdef0123, go1.26.8)"},
		{"vcs only", "", "", vcs,
			Info{"dev", "0123456789abcdef-dirty", "go1.26.8"}, "dev (revision 0123456789abcdef-dirty, go1.26.8)"},
		{"go install module@version", "", "", &debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Version: "v1.4.0"}},
			Info{"v1.4.0", "", "go1.26.8"}, "v1.4.0 (go1.26.8)"},
		{"nothing", "", "", nil, Info{Version: "dev"}, "dev"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := read(tt.version, tt.revision, tt.bi)
			if got != tt.want {
				t.Errorf("read = %+v, want %+v", got, tt.want)
			}
			if got.String() != tt.str {
				t.Errorf("String = %q, want %q", got.String(), tt.str)
			}
		})
	}
}

func TestCollector(t *testing.T) {
	reg := prometheus.NewRegistry()
	reg.MustRegister(Info{"v1.2.3", "abc", "go1.26.8"}.Collector("relay"))
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	if len(mfs) != 1 || mfs[0].GetName() != "relay_build_info" || len(mfs[0].Metric) != 1 {
		t.Fatalf("gathered %v", mfs)
	}
	m := mfs[0].Metric[0]
	labels := map[string]string{}
	for _, l := range m.Label {
		labels[l.GetName()] = l.GetValue()
	}
	if m.GetGauge().GetValue() != 1 || labels["version"] != "v1.2.3" || labels["revision"] != "abc" || labels["goversion"] != "go1.26.8" || len(labels) != 3 {
		t.Fatalf("relay_build_info = %v %v", m.GetGauge().GetValue(), labels)
	}
}

func TestLDFlags(t *testing.T) {
	if got, want := LDFlags("v1", "abc"), "-X github.com/tunnel-dev/tunnel/internal/buildinfo.version=v1 -X github.com/tunnel-dev/tunnel/internal/buildinfo.revision=abc"; got != want {
		t.Fatalf("LDFlags = %q, want %q", got, want)
	}
}
