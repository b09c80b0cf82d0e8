package main

import (
	"strings"
	"testing"
	"time"
)

func TestParseRetention(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want time.Duration
		err  bool
	}{
		{"7d", 7 * 24 * time.Hour, false},
		{"0", 0, false},
		{"36h", 36 * time.Hour, false},
		{"1d12h", 0, true},
		{"-1h", 0, true},
		{"d", 0, true},
		{"-3d", 0, true},
		{"99999999d", 0, true},
		{"", 0, true},
	} {
		got, err := parseRetention(tc.in)
		if (err != nil) != tc.err || got != tc.want {
			t.Errorf("parseRetention(%q) = %v, %v; want %v, error %v", tc.in, got, err, tc.want, tc.err)
		}
		if err != nil && !strings.Contains(err.Error(), "want whole days") {
			t.Errorf("parseRetention(%q): the error does not say what to give: %v", tc.in, err)
		}
	}
}

func FuzzParseRetention(f *testing.F) {
	for _, s := range []string{"7d", "36h", "0", "-1h", "1d12h", "65535d"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		d, err := parseRetention(s)
		if err == nil && d < 0 {
			t.Fatalf("parseRetention(%q) = %v, negative", s, d)
		}
	})
}
