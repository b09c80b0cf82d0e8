// Package image builds the project's container image without a Docker
// daemon: the three static binaries (tunnel, relay, bunny) on an empty
// base, owned by root and run as a fixed non-root user, with no shell and
// nothing else. It writes the image as a tarball that `docker load` and
// registries (`crane push`) accept. `make image` runs ./build.
package image
