//go:build !linux

package bench

import (
	"context"
	"errors"
)

// NetnsSupported says why the production shape cannot be measured here:
// it needs Linux network namespaces.
func NetnsSupported() error { return errors.New("--netns needs Linux network namespaces") }

// RunNetns is not available off Linux.
func RunNetns(context.Context, NetnsOptions) (*Report, error) { return nil, NetnsSupported() }
