package image

import (
	"archive/tar"
	"bytes"
	"fmt"
	"io"
	"os"
	"path"
	"runtime"
	"sort"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// The user the image runs as: not root, and the same fixed UID the
// manifests' securityContext names.
const (
	UID = 65532
	GID = 65532
	// HandlerUID and HandlerGID are the handler sidecar's user beside
	// bunny's: not bunny's, so a job cannot read bunny's files or
	// processes. The binaries are 0555, so it can run them.
	HandlerUID = 65533
	HandlerGID = 65533
)

// BinDir is where the binaries live in the image.
const BinDir = "/usr/local/bin"

// Commands maps each binary the image carries to its Go package, relative
// to the module's root: tunnel (the operator's tool), tunnel-gateway
// (what a gateway pod runs), relay and bunny.
func Commands() map[string]string {
	return map[string]string{
		"tunnel":         "./tunnel/cmd/tunnel",
		"tunnel-gateway": "./tunnel/cmd/tunnel-gateway",
		"relay":          "./relay/cmd/relay",
		"bunny":          "./bunny/cmd/bunny",
	}
}

// Options say what goes into the image.
type Options struct {
	// Binaries maps a command's name to the path of its static binary.
	Binaries map[string]string
	// Entrypoint names the binary the image runs by default.
	Entrypoint string
	// Arch is the binaries' GOARCH; default this machine's.
	Arch string
	// Created is stamped on the image and its files; zero keeps the build
	// reproducible (the Unix epoch).
	Created time.Time
	// Source, if set, is recorded as org.opencontainers.image.source.
	Source string
}

// Build assembles the image.
func Build(o Options) (v1.Image, error) {
	if len(o.Binaries) == 0 {
		return nil, fmt.Errorf("building image: no binaries")
	}
	if _, ok := o.Binaries[o.Entrypoint]; !ok {
		return nil, fmt.Errorf("building image: entrypoint %q is not one of the binaries", o.Entrypoint)
	}
	if o.Arch == "" {
		o.Arch = runtime.GOARCH
	}
	layer, err := filesLayer(o)
	if err != nil {
		return nil, err
	}
	img, err := mutate.AppendLayers(empty.Image, layer)
	if err != nil {
		return nil, fmt.Errorf("building image: %w", err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, fmt.Errorf("building image: %w", err)
	}
	cf = cf.DeepCopy()
	cf.Architecture = o.Arch
	cf.OS = "linux"
	cf.Created = v1.Time{Time: o.Created}
	cf.Config.User = fmt.Sprintf("%d:%d", UID, GID)
	cf.Config.Entrypoint = []string{path.Join(BinDir, o.Entrypoint)}
	cf.Config.Cmd = nil
	cf.Config.WorkingDir = "/"
	cf.Config.Env = []string{"PATH=" + BinDir}
	cf.Config.Labels = map[string]string{"org.opencontainers.image.title": "tunnel"}
	if o.Source != "" {
		cf.Config.Labels["org.opencontainers.image.source"] = o.Source
	}
	return mutate.ConfigFile(img, cf)
}

// filesLayer is the one layer: the binaries, and passwd and group files
// naming the non-root user (so that tools show a name, not a number).
func filesLayer(o Options) (v1.Layer, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	dir := func(name string) error {
		return tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: name + "/", Mode: 0o755, ModTime: o.Created})
	}
	file := func(name string, mode int64, data []byte) error {
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: mode, Size: int64(len(data)), ModTime: o.Created}); err != nil {
			return err
		}
		_, err := tw.Write(data)
		return err
	}
	for _, d := range []string{"etc", "usr", "usr/local", "usr/local/bin"} {
		if err := dir(d); err != nil {
			return nil, err
		}
	}
	if err := file("etc/passwd", 0o644, fmt.Appendf(nil, "root:x:0:0:root:/:/nonexistent\nnonroot:x:%d:%d:nonroot:/nonexistent:/nonexistent\nhandler:x:%d:%d:handler:/nonexistent:/nonexistent\n", UID, GID, HandlerUID, HandlerGID)); err != nil {
		return nil, err
	}
	if err := file("etc/group", 0o644, fmt.Appendf(nil, "root:x:0:\nnonroot:x:%d:\nhandler:x:%d:\n", GID, HandlerGID)); err != nil {
		return nil, err
	}
	names := make([]string, 0, len(o.Binaries))
	for n := range o.Binaries {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		b, err := os.ReadFile(o.Binaries[n])
		if err != nil {
			return nil, fmt.Errorf("building image: reading binary %s: %w", n, err)
		}
		if err := file(path.Join(BinDir, n)[1:], 0o555, b); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	data := buf.Bytes()
	return tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(data)), nil
	})
}

// WriteTarball writes the image as a tarball tagged ref ("tunnel:dev"),
// atomically: a temp file renamed into place.
func WriteTarball(file, ref string, img v1.Image) error {
	tag, err := name.NewTag(ref)
	if err != nil {
		return fmt.Errorf("writing image: tag %q: %w", ref, err)
	}
	tmp := file + ".tmp"
	if err := tarball.WriteToFile(tmp, tag, img); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("writing image %s: %w", file, err)
	}
	if err := os.Rename(tmp, file); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("writing image %s: %w", file, err)
	}
	return nil
}
