// Package testutil holds the small helpers the module's tests share:
// polling until a condition holds, a buffer that a logger may write while
// the test reads it, and fresh keys and identities.
package testutil
