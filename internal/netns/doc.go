// Package netns builds test networks out of Linux network namespaces: a
// namespace per "cluster", veth pairs between them, processes started inside
// them, and Go sockets opened inside them. Everything made is removed when
// the test ends, even when it fails. It needs root; Require skips the test
// with the reason otherwise.
package netns
