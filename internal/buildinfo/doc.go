// Package buildinfo is what a binary knows about its own build: the
// version and revision stamped at link time (make build and the image pass
// -ldflags -X, see LDFlags), else the module version and VCS revision Go
// recorded, else "dev". --version prints it and every binary exports it
// as NAME_build_info{version,revision,goversion} 1.
package buildinfo
