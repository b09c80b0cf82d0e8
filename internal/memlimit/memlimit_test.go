package memlimit

import (
	"testing"
	"testing/fstest"
)

func TestLimit(t *testing.T) {
	for _, tc := range []struct {
		name   string
		files  fstest.MapFS
		proc   string
		want   int64
		wantOK bool
		err    bool
	}{
		{"v2 in a cgroup namespace", fstest.MapFS{"memory.max": {Data: []byte("268435456\n")}}, "0::/\n", 256 << 20, true, false},
		{"v2 full path", fstest.MapFS{"kubepods/pod1/c1/memory.max": {Data: []byte("134217728\n")}}, "0::/kubepods/pod1/c1\n", 128 << 20, true, false},
		{"v2 no limit", fstest.MapFS{"memory.max": {Data: []byte("max\n")}}, "0::/\n", 0, false, false},
		{"v1", fstest.MapFS{"memory/docker/abc/memory.limit_in_bytes": {Data: []byte("536870912\n")}},
			"12:cpu,cpuacct:/docker/abc\n11:memory:/docker/abc\n", 512 << 20, true, false},
		{"v1 unlimited", fstest.MapFS{"memory/memory.limit_in_bytes": {Data: []byte("9223372036854771712\n")}}, "5:memory:/\n", 0, false, false},
		{"no cgroup files", fstest.MapFS{}, "0::/user.slice\n", 0, false, false},
		{"garbage limit", fstest.MapFS{"memory.max": {Data: []byte("lots\n")}}, "0::/\n", 0, false, true},
		{"garbage proc", fstest.MapFS{}, "nonsense\n", 0, false, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, ok, err := Limit(tc.files, tc.proc)
			if (err != nil) != tc.err || got != tc.want || ok != tc.wantOK {
				t.Fatalf("Limit = %d, %v, %v; want %d, %v, error %v", got, ok, err, tc.want, tc.wantOK, tc.err)
			}
		})
	}
}

func FuzzParseProcCgroup(f *testing.F) {
	f.Add("0::/\n")
	f.Add("11:memory:/docker/abc\n0::/x\n")
	f.Fuzz(func(t *testing.T, s string) {
		v2, v1, err := parseProcCgroup(s)
		if err == nil && ((v2 != "" && v2[0] != '/') || (v1 != "" && v1[0] != '/')) {
			t.Fatalf("relative paths %q %q from %q", v2, v1, s)
		}
	})
}

func FuzzParseLimit(f *testing.F) {
	f.Add("max\n")
	f.Add("268435456\n")
	f.Fuzz(func(t *testing.T, s string) {
		n, ok, err := parseLimit(s)
		if err == nil && ok && (n <= 0 || n >= unlimited) {
			t.Fatalf("limit %d from %q", n, s)
		}
	})
}

// In the process's real cgroup, FromCgroup leaves an explicit GOMEMLIMIT
// alone.
func TestFromCgroupKeepsGOMEMLIMIT(t *testing.T) {
	t.Setenv("GOMEMLIMIT", "100MiB")
	set, from, err := FromCgroup()
	if err != nil || set != 0 || from != "GOMEMLIMIT=100MiB" {
		t.Fatalf("FromCgroup = %d, %q, %v", set, from, err)
	}
}

func TestTightenGCKeepsGOGC(t *testing.T) {
	t.Setenv("GOGC", "200")
	if got := TightenGC(); got != "GOGC=200" {
		t.Fatalf("TightenGC = %q with GOGC set", got)
	}
}
