// Package image builds the project's container image without a Docker
// daemon: the static binaries (tunnel, tunnel-gateway, relay, bunny; see
// Commands) on an empty
// base, owned by root and run as a fixed non-root user, with no shell and
// nothing else. It writes the image as a tarball that `docker load` and
// registries (`crane push`) accept. `make image` runs ./build.
package image
