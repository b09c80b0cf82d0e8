//go:build !linux

package queue

func newChunk(n int) []entry { return make([]entry, n) }

func newSlots(n int) []uint32 { return make([]uint32, n) }

func freeSlots([]uint32) {}

func freeChunk([]entry) {}
