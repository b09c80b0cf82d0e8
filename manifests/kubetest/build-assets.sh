#!/usr/bin/env bash
# Builds kube-apiserver and etcd from the Go module proxy and caches them for
# the tests in manifests/kubetest (and every test that imports it).
#
#   manifests/kubetest/build-assets.sh        # build if missing, else do nothing
#
# Where: $TUNNEL_KUBE_ASSETS if set, else
# ${XDG_CACHE_HOME:-$HOME/.cache}/tunnel-kubetest/v1.37.2/ (the directory the
# Go tests look in, see kubetest.AssetsDir).
#
# How: a throwaway module outside the project's go.mod requires
# k8s.io/kubernetes at the pinned version plus one replace per staging module
# (k8s.io/kubernetes's own go.mod points them at ./staging/src, which the
# proxy's zip does not carry), and builds etcd inside that same module. Builds
# go into a temp directory next to the cache and are moved into place only when
# both binaries exist and report the pinned versions, so an interrupted run
# leaves nothing half-built and re-running is always safe. A cold build takes
# 8-16 min on 2 cores (about 3.5 GB of module and build cache); with a warm Go
# build cache, under 30 s; with the binaries present, nothing.
set -euo pipefail

# Pinned. Changing one means a new cache directory (the version is in its name)
# and checking the Go version the new release declares: with GOTOOLCHAIN=local a
# release that declares a newer go than the installed one does not build.
K8S_VERSION=v1.37.2
STAGING_VERSION=v0.37.2 # k8s.io/<staging module> tag matching K8S_VERSION
ETCD_VERSION=v3.7.0     # what K8S_VERSION's go.mod pins

dest="${TUNNEL_KUBE_ASSETS:-${XDG_CACHE_HOME:-$HOME/.cache}/tunnel-kubetest/${K8S_VERSION}}"
dest="${dest%/}"
parent="$(dirname "$dest")"
base="$(basename "$dest")"
start=$SECONDS

say() { printf 'build-assets: %s\n' "$*"; }
elapsed() { printf '%dm%02ds' $(((SECONDS - start) / 60)) $(((SECONDS - start) % 60)); }

have_assets() {
  [ -x "$1/kube-apiserver" ] && [ -x "$1/etcd" ] && [ -f "$1/VERSIONS" ] &&
    grep -qx "kube-apiserver ${K8S_VERSION}" "$1/VERSIONS" &&
    grep -qx "etcd ${ETCD_VERSION}" "$1/VERSIONS"
}

if have_assets "$dest"; then
  say "kube-apiserver ${K8S_VERSION} and etcd ${ETCD_VERSION} already in ${dest}; nothing to do ($(elapsed))"
  exit 0
fi

mkdir -p "$parent"
# One build at a time per cache directory: a second run waits, then finds the
# binaries the first one built.
# The lock's descriptor is inherited by the go commands, so even a go build
# orphaned by a SIGKILLed run keeps others out until it ends.
exec 9>"${parent}/.${base}.lock"
if ! flock -n 9; then
  say "another build holds ${parent}/.${base}.lock; waiting for it"
  flock 9
fi
if have_assets "$dest"; then
  say "built by another run meanwhile; nothing to do ($(elapsed))"
  exit 0
fi

# Leftovers of interrupted runs (we hold the lock, so none is in use).
rm -rf "${parent}/.${base}.build-"*

work="$(mktemp -d "${parent}/.${base}.build-XXXXXX")"
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/src" "$work/out"

export GOTOOLCHAIN=local
export GOWORK=off
export CGO_ENABLED=0
export GOFLAGS="-mod=mod -buildvcs=false"

say "building kube-apiserver ${K8S_VERSION} and etcd ${ETCD_VERSION} into ${dest}"
say "with $(go version); a cold build takes 8-16 min on 2 cores"

cd "$work/src"
cat >go.mod <<EOF
// Throwaway module: builds kube-apiserver and etcd for manifests/kubetest.
module tunnel.invalid/kubetest-assets

go $(go env GOVERSION | sed -E 's/^go([0-9]+\.[0-9]+).*/\1/')
EOF

say "fetching k8s.io/kubernetes@${K8S_VERSION} to read its staging modules ($(elapsed))"
kgomod="$(go mod download -json "k8s.io/kubernetes@${K8S_VERSION}" | sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",*$/\1/p')"
[ -f "$kgomod" ] || { say "could not find the go.mod of k8s.io/kubernetes@${K8S_VERSION}"; exit 1; }
# Lines like `k8s.io/api => ./staging/src/k8s.io/api` (inside a replace block or not).
mapfile -t staging < <(sed -nE 's#^[[:space:]]*(replace[[:space:]]+)?(k8s\.io/[A-Za-z0-9._/-]+)[[:space:]]+=>[[:space:]]+\./staging/src/.*#\2#p' "$kgomod" | sort -u)
[ "${#staging[@]}" -gt 0 ] || { say "found no staging replaces in ${kgomod}"; exit 1; }
say "replacing ${#staging[@]} staging modules with their ${STAGING_VERSION} releases"

{
  echo
  echo "require ("
  echo "	k8s.io/kubernetes ${K8S_VERSION}"
  echo "	go.etcd.io/etcd/server/v3 ${ETCD_VERSION}"
  echo ")"
  echo
  echo "replace ("
  for m in "${staging[@]}"; do echo "	$m => $m ${STAGING_VERSION}"; done
  echo ")"
  echo
  echo "tool ("
  echo "	k8s.io/kubernetes/cmd/kube-apiserver"
  echo "	go.etcd.io/etcd/server/v3"
  echo ")"
} >>go.mod

say "resolving the module graph (go mod tidy, in the throwaway module only) ($(elapsed))"
go mod tidy

got_etcd="$(go list -m -f '{{.Version}}' go.etcd.io/etcd/server/v3)"
if [ "$got_etcd" != "$ETCD_VERSION" ]; then
  say "module graph chose go.etcd.io/etcd/server/v3 ${got_etcd}, want ${ETCD_VERSION}: update ETCD_VERSION"
  exit 1
fi

ver="${K8S_VERSION#v}"
major="${ver%%.*}"
minor="${ver#*.}"
minor="${minor%%.*}"
kpkg=k8s.io/component-base/version
kflags="-s -w -X ${kpkg}.gitVersion=${K8S_VERSION} -X ${kpkg}.gitMajor=${major} -X ${kpkg}.gitMinor=${minor} -X ${kpkg}.gitTreeState=clean -X ${kpkg}.buildDate=1970-01-01T00:00:00Z"

say "building kube-apiserver (the long part) ($(elapsed))"
go build -trimpath -ldflags "$kflags" -o "$work/out/kube-apiserver" k8s.io/kubernetes/cmd/kube-apiserver
say "building etcd ($(elapsed))"
go build -trimpath -ldflags "-s -w" -o "$work/out/etcd" go.etcd.io/etcd/server/v3

kv="$("$work/out/kube-apiserver" --version)"
ev="$("$work/out/etcd" --version | sed -n 's/^etcd Version: //p')"
say "built: ${kv}; etcd ${ev}"
[ "$kv" = "Kubernetes ${K8S_VERSION}" ] || { say "kube-apiserver reports '${kv}', want Kubernetes ${K8S_VERSION}"; exit 1; }
[ "v${ev}" = "$ETCD_VERSION" ] || { say "etcd reports '${ev}', want ${ETCD_VERSION}"; exit 1; }
printf 'kube-apiserver %s\netcd %s\nbuilt-with %s\n' "$K8S_VERSION" "$ETCD_VERSION" "$(go env GOVERSION)" >"$work/out/VERSIONS"

# Into place: the directory appears whole or not at all.
rm -rf "$dest"
mv "$work/out" "$dest"
say "done: $(ls "$dest" | tr '\n' ' ')in ${dest} ($(elapsed))"
