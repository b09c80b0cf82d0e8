package procstat

import (
	"os"
	"runtime"
	"strings"
	"testing"
)

func TestSelf(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("/proc/PID/status is Linux's")
	}
	rss, err := RSS(Self)
	if err != nil {
		t.Fatal(err)
	}
	peak, err := PeakRSS(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if rss == 0 || peak < rss/2 {
		t.Fatalf("VmRSS %d, VmHWM %d: want a resident set and a peak at least near it", rss, peak)
	}
	if _, err := Field(Self, "NoSuchField"); err == nil || !strings.Contains(err.Error(), "NoSuchField") {
		t.Fatalf("a missing field: %v, want an error naming it", err)
	}
}

func TestParse(t *testing.T) {
	const status = "Name:\tx\nUid:\t0\t65532\t0\t0\nVmHWM:\t  2048 kB\nVmRSS:\t1024 kB\n"
	tests := []struct {
		field   string
		want    uint64
		wantErr string
	}{
		{"VmRSS", 1 << 20, ""},
		{"VmHWM", 2 << 20, ""},
		{"Name", 0, "not a size"},
		{"VmSwap", 0, "has no VmSwap"},
	}
	for _, tt := range tests {
		t.Run(tt.field, func(t *testing.T) {
			v, err := parse(status, tt.field, "status")
			var n uint64
			if err == nil {
				n, err = kB(v, tt.field)
			}
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil || n != tt.want {
				t.Fatalf("%d, %v; want %d", n, err, tt.want)
			}
		})
	}
}

func FuzzParse(f *testing.F) {
	f.Add("VmRSS:\t1024 kB\n", "VmRSS")
	f.Add("VmRSS: x kB", "VmRSS")
	f.Fuzz(func(t *testing.T, status, field string) {
		v, err := parse(status, field, "status")
		if err != nil {
			return
		}
		_, _ = kB(v, field)
	})
}
