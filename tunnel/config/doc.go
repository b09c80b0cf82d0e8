// Package config is the gateway's configuration file: its types, a strict
// YAML parser (an unknown field, a bad key, a bad address or port, a rule
// naming an unknown peer are each an error naming the field and its line),
// and a plain-words description of exactly what the gateway exposes to whom.
//
// The format is documented in docs/gateway-config.md.
package config
