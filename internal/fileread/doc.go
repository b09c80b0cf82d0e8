// Package fileread reads a file no larger than a cap, so that no file a
// binary reads (a config, a key, a certificate, a DSN) can make it hold
// more memory than the cap: a larger file is refused, naming the file and
// the cap.
package fileread
