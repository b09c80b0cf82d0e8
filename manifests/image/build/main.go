// Command build builds the three binaries statically and writes the image
// tarball: `go run ./manifests/image/build -o bin/tunnel-image.tar`.
package main

import (
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"

	"github.com/tunnel-dev/tunnel/manifests/image"
)

func main() {
	out := flag.String("o", "bin/tunnel-image.tar", "where to write the image tarball")
	tag := flag.String("tag", "tunnel:dev", "the image's tag")
	flag.Parse()
	if err := run(*out, *tag); err != nil {
		fmt.Fprintln(os.Stderr, "image:", err)
		os.Exit(1)
	}
}

func run(out, tag string) error {
	dir, err := os.MkdirTemp("", "tunnel-image-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	bins := map[string]string{}
	for name, pkg := range map[string]string{
		"tunnel": "./tunnel/cmd/tunnel",
		"relay":  "./relay/cmd/relay",
		"bunny":  "./bunny/cmd/bunny",
	} {
		if files, _ := filepath.Glob(filepath.Join(pkg, "*.go")); len(files) == 0 {
			fmt.Fprintf(os.Stderr, "image: skipping %s (no Go files in %s)\n", name, pkg)
			continue
		}
		bin := filepath.Join(dir, name)
		cmd := exec.Command("go", "build", "-trimpath", "-ldflags", "-s -w", "-o", bin, pkg)
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
