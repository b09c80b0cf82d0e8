// Command build builds the image's binaries (image.Commands) statically and writes the image
// tarball: `go run ./manifests/image/build -o bin/tunnel-image.tar`.
package main

import (
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/tunnel-dev/tunnel/internal/buildinfo"
	"github.com/tunnel-dev/tunnel/manifests/image"
)

func main() {
	out := flag.String("o", "bin/tunnel-image.tar", "where to write the image tarball")
	tag := flag.String("tag", "tunnel:dev", "the image's tag")
	version := flag.String("version", "", "the version --version and *_build_info report (default: git describe --tags --always --dirty)")
	revision := flag.String("revision", "", "the commit they report (default: git rev-parse HEAD)")
	flag.Parse()
	if *version == "" {
		*version = git("describe", "--tags", "--always", "--dirty")
	}
	if *version == "" {
		*version = buildinfo.Unknown
	}
	if *revision == "" {
		*revision = git("rev-parse", "HEAD")
	}
	if err := run(*out, *tag, buildinfo.LDFlags(*version, *revision)); err != nil {
		fmt.Fprintln(os.Stderr, "image:", err)
		os.Exit(1)
	}
}

// git returns the trimmed output of a git command, or "" outside a
// checkout.
func git(args ...string) string {
	b, err := exec.Command("git", args...).Output()
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

func run(out, tag, stamp string) error {
	dir, err := os.MkdirTemp("", "tunnel-image-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	bins := map[string]string{}
	for name, pkg := range image.Commands() {
		if files, _ := filepath.Glob(filepath.Join(pkg, "*.go")); len(files) == 0 {
			fmt.Fprintf(os.Stderr, "image: skipping %s (no Go files in %s)\n", name, pkg)
			continue
		}
		bin := filepath.Join(dir, name)
		cmd := exec.Command("go", "build", "-trimpath", "-ldflags", "-s -w "+stamp, "-o", bin, pkg)
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux")
		cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
		if err := cmd.Run(); err != nil {
			return fmt.Errorf("building %s: %w", name, err)
		}
		bins[name] = bin
	}
	img, err := image.Build(image.Options{Binaries: bins, Entrypoint: "tunnel"})
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
		return err
	}
	if err := image.WriteTarball(out, tag, img); err != nil {
		return err
	}
	d, _ := img.Digest()
	fmt.Printf("wrote %s (%s, digest %s)\n", out, tag, d)
	return nil
}
