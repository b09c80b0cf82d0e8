// Package cli is the glue the tunnel, relay and bunny commands share: kong
// parsing with every flag settable from the environment, slog setup, signal
// handling and exit codes that mean something (0 ok, 1 runtime failure, 2
// bad usage or configuration).
package cli
