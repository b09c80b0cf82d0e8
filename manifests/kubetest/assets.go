package kubetest

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// The versions build-assets.sh builds. They name the cache directory, so a
// change here and in the script moves both to a new directory.
const (
	KubernetesVersion = "v1.37.2"
	EtcdVersion       = "v3.7.0"
)

// BuildScript is the script that builds the binaries, relative to the
// repository root.
const BuildScript = "manifests/kubetest/build-assets.sh"

// AssetsEnv names the environment variable that overrides [AssetsDir].
const AssetsEnv = "TUNNEL_KUBE_ASSETS"

// ErrAssetsMissing is wrapped by the errors of [New] when the binaries are not
// in [AssetsDir].
var ErrAssetsMissing = errors.New("kube-apiserver and etcd binaries are missing")

// AssetsDir returns the directory holding kube-apiserver and etcd: the value
// of $TUNNEL_KUBE_ASSETS if set, else
// ${XDG_CACHE_HOME:-$HOME/.cache}/tunnel-kubetest/<KubernetesVersion>, the
// same rule build-assets.sh follows.
func AssetsDir() (string, error) {
	if d := os.Getenv(AssetsEnv); d != "" {
		return d, nil
	}
	cache, err := os.UserCacheDir()
	if err != nil {
		return "", fmt.Errorf("finding the kubetest assets directory (set %s): %w", AssetsEnv, err)
	}
	return filepath.Join(cache, "tunnel-kubetest", KubernetesVersion), nil
}

// assets are the paths of the binaries.
type assets struct {
	apiserver, etcd string
}

func findAssets() (assets, error) {
	dir, err := AssetsDir()
	if err != nil {
		return assets{}, err
	}
	a := assets{
		apiserver: filepath.Join(dir, "kube-apiserver"),
		etcd:      filepath.Join(dir, "etcd"),
	}
	for _, p := range []string{a.apiserver, a.etcd} {
		fi, err := os.Stat(p)
		if errors.Is(err, os.ErrNotExist) {
			return assets{}, fmt.Errorf("%w: no %s (run %s to build kube-apiserver %s and etcd %s, 8-16 min the first time)",
				ErrAssetsMissing, p, BuildScript, KubernetesVersion, EtcdVersion)
		}
		if err != nil {
			return assets{}, fmt.Errorf("looking for %s: %w", p, err)
		}
		if fi.IsDir() || fi.Mode().Perm()&0o111 == 0 {
			return assets{}, fmt.Errorf("%w: %s is not an executable file (re-run %s)", ErrAssetsMissing, p, BuildScript)
		}
	}
	return a, nil
}
