//go:build !unix

package bench

import (
	"errors"
	"time"
)

// procCPU is not measured here: the figures come from /proc and getrusage.
func procCPU(int) (time.Duration, error) { return 0, errors.New("CPU time is measured on Unix only") }
