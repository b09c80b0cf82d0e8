// Package keys holds the key material the tunnel runs on: WireGuard key
// pairs for the gateways and the QUIC worker identities (an Ed25519 key and a
// self-signed certificate, pinned by the hash of its public key) that relay
// uses to know which bunny is calling.
//
// Private keys are typed so that they cannot leak by accident: their String
// and slog forms are redacted, they are read only from files that no group or
// other user can read, and they are written atomically (temp file, fsync,
// rename) with mode 0600.
package keys
