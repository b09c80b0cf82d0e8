// Package client is a worker's connection to relay: what bunny uses to
// lease jobs, heartbeat them, and complete or fail them.
//
//	id, _ := keys.LoadIdentity("identity.crt", "identity.key")
//	relayPin, _ := keys.ParsePin("sha256/…") // or keys.LoadCertificatePin("relay.crt")
//	c, err := client.Dial(ctx, client.Options{Addr: "relay:7443", Identity: id, RelayPin: relayPin})
//	jobs, err := c.Lease(ctx, client.LeaseOptions{Max: 4, Wait: 20 * time.Second})
//	for _, j := range jobs {
//		// … run it, heartbeating j.Lease every j.LeaseDuration/3 …
//		dup, err := c.Complete(ctx, j.Lease, result)
//	}
//
// The package's Example runs that cycle against a real relay on loopback
// (go doc -http shows it; go test runs it).
//
// A Client is one QUIC connection; its methods are safe for concurrent
// use, each call being its own stream. It does not reconnect: when Done is
// closed, dial again (leases belong to the worker's name, not to the
// connection, so heartbeats and results carry on over the new one).
//
// Errors are typed. Test them with errors.Is against ErrUnauthorized,
// ErrLeaseLost, ErrOverloaded (RetryAfter says how long to wait),
// ErrCredentialsRevoked, ErrShuttingDown, ErrNotFound, ErrInvalid and
// ErrConnectionLost (the connection is gone: dial again and retry what was
// not acknowledged). A *proto.Error carries the code and relay's message.
package client
