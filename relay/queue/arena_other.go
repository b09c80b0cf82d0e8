//go:build !linux

package queue

func newChunk(n int) []entry { return make([]entry, n) }
