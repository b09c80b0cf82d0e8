//go:build !(linux || darwin || freebsd || netbsd || openbsd || dragonfly)

package store

import (
	"context"
	"fmt"
	"runtime"
)

// lockDir is not available here: writers could not exclude each other.
func lockDir(context.Context, string) (func(), error) {
	return nil, fmt.Errorf("locking a key directory is not supported on %s", runtime.GOOS)
}
