package queue

import (
	"unsafe"

	"golang.org/x/sys/unix"
)

// newChunk maps a block of n entries outside the Go heap: a million
// queued jobs are about 110 MiB of entries, which the garbage collector
// would otherwise count towards its goal and double.
func newChunk(n int) []entry {
	size := n * int(unsafe.Sizeof(entry{}))
	b, err := unix.Mmap(-1, 0, size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_ANON|unix.MAP_PRIVATE)
	if err != nil {
		return make([]entry, n) // the heap will do
	}
	return unsafe.Slice((*entry)(unsafe.Pointer(&b[0])), n)
}
