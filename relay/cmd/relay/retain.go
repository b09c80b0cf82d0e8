package main

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// retention is --retain: a Go duration, or whole days ("7d"); 0 keeps
// finished jobs forever.
type retention time.Duration

func (r *retention) UnmarshalText(b []byte) error {
	d, err := parseRetention(string(b))
	if err != nil {
		return err
	}
	*r = retention(d)
	return nil
}

func parseRetention(s string) (time.Duration, error) {
	if days, ok := strings.CutSuffix(s, "d"); ok {
		n, err := strconv.ParseUint(days, 10, 16)
		if err != nil {
			return 0, fmt.Errorf("%q: want whole days (7d) or a duration (36h)", s)
		}
		return time.Duration(n) * 24 * time.Hour, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < 0 {
		return 0, fmt.Errorf("%q: want whole days (7d) or a duration (36h), not negative", s)
	}
	return d, nil
}
