package main

import "github.com/tunnel-dev/tunnel/internal/gatewaycmd"

// gatewayCmd is `tunnel gateway`: the same command as the tunnel-gateway
// binary's.
type gatewayCmd = gatewaycmd.Command
