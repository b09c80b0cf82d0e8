// Package hostport checks the host:port fields of the config files (a
// peer's endpoint, a rule's target or listen address, relay's address, an
// admin listener), one rule for the gateway's and bunny's configs.
package hostport
