package queue

import (
	"unsafe"

	"golang.org/x/sys/unix"
)

// mapAnon maps size bytes of zeroed memory outside the Go heap, or nil.
func mapAnon(size int) []byte {
	b, err := unix.Mmap(-1, 0, size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_ANON|unix.MAP_PRIVATE)
	if err != nil {
		return nil
	}
	return b
}

// newChunk maps a block of n entries outside the Go heap: a million
// queued jobs are about 110 MiB of entries, which the garbage collector
// would otherwise count towards its goal and double.
func newChunk(n int) []entry {
	b := mapAnon(n * int(unsafe.Sizeof(entry{})))
	if b == nil {
		return make([]entry, n) // the heap will do
	}
	return unsafe.Slice((*entry)(unsafe.Pointer(&b[0])), n)
}

// newSlots is an idTable's table, outside the Go heap.
func newSlots(n int) []uint32 {
	b := mapAnon(n * 4)
	if b == nil {
		return make([]uint32, n)
	}
	return unsafe.Slice((*uint32)(unsafe.Pointer(&b[0])), n)
}

// freeSlots unmaps a table newSlots made (one from the heap is left to
// the garbage collector).
func freeSlots(s []uint32) {
	if len(s) == 0 {
		return
	}
	b := unsafe.Slice((*byte)(unsafe.Pointer(&s[0])), len(s)*4)
	_ = unix.Munmap(b)
}

// freeChunk unmaps a block newChunk made.
func freeChunk(c []entry) {
	if len(c) == 0 {
		return
	}
	_ = unix.Munmap(unsafe.Slice((*byte)(unsafe.Pointer(&c[0])), len(c)*int(unsafe.Sizeof(entry{}))))
}
