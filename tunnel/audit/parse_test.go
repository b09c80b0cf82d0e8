package audit

import (
	"slices"
	"strings"
	"testing"
)

func TestParsePorts(t *testing.T) {
	tests := []struct {
		in   string
		want []uint16
		err  string
	}{
		{"8000", []uint16{8000}, ""},
		{"1-3, 10", []uint16{1, 2, 3, 10}, ""},
		{"65535", []uint16{65535}, ""},
		{"0", nil, `"0" is not a port`},
		{"65536", nil, `"65536" is not a port`},
		{"5-1", nil, "runs backwards"},
		{"1,,2", nil, "empty item"},
		{"http", nil, `"http" is not a port`},
	}
	for _, tt := range tests {
		got, err := ParsePorts(tt.in)
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("ParsePorts(%q): %v, want an error with %q", tt.in, err, tt.err)
			}
			continue
		}
		if err != nil || !slices.Equal(got, tt.want) {
			t.Errorf("ParsePorts(%q) = %v, %v; want %v", tt.in, got, err, tt.want)
		}
	}
	if all, err := ParsePorts("1-65535"); err != nil || len(all) != 65535 {
		t.Errorf("1-65535: %d ports, %v", len(all), err)
	}
}

func TestParseExpect(t *testing.T) {
	for in, want := range map[string]string{
		"tcp/10.99.0.1:9000":      "tcp/10.99.0.1:9000",
		"udp/[fd00::1]:53":        "udp/[fd00::1]:53",
		"tcp/[::ffff:10.0.0.1]:1": "tcp/10.0.0.1:1",
		"sctp/10.0.0.1:1":         "",
		"tcp/10.0.0.1":            "",
		"tcp/10.0.0.1:0":          "",
		"tcp/host:80":             "",
	} {
		e, err := ParseExpect(in)
		if want == "" {
			if err == nil {
				t.Errorf("ParseExpect(%q) = %v, want an error", in, e)
			}
			continue
		}
		if err != nil || e.String() != want {
			t.Errorf("ParseExpect(%q) = %v, %v; want %s", in, e, err, want)
		}
	}
}

func FuzzParsePorts(f *testing.F) {
	for _, s := range []string{"1-65535", "80,443", "5-1", "", "0", "1-"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		ps, err := ParsePorts(s)
		if err != nil {
			return
		}
		for _, p := range ps {
			if p == 0 {
				t.Fatalf("%q gave port 0", s)
			}
		}
	})
}

func FuzzParseExpect(f *testing.F) {
	for _, s := range []string{"tcp/10.0.0.1:80", "udp/[::1]:53", "x", "tcp/"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		e, err := ParseExpect(s)
		if err != nil {
			return
		}
		again, err := ParseExpect(e.String())
		if err != nil || again != e {
			t.Fatalf("%q: %v does not parse back (%v, %v)", s, e, again, err)
		}
	})
}
