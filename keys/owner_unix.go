//go:build unix

package keys

import (
	"io/fs"
	"syscall"
)

// ownedByRoot reports whether fi's file belongs to uid 0.
func ownedByRoot(fi fs.FileInfo) bool {
	st, ok := fi.Sys().(*syscall.Stat_t)
	return ok && st.Uid == 0
}
