package store

import (
	"os"

	"golang.org/x/sys/unix"
)

// datasync makes f's data durable, with the metadata needed to read it
// back (its size), but not its times.
func datasync(f *os.File) error { return unix.Fdatasync(int(f.Fd())) }
