// Package dirsync makes a directory's entries durable: after a file is
// created, renamed or removed in it, the change survives a crash only
// once the directory itself is synced.
package dirsync
