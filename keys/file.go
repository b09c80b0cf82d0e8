package keys

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/tunnel-dev/tunnel/internal/dirsync"
	"github.com/tunnel-dev/tunnel/internal/fileread"
)

// WriteFile writes data to path atomically: a temp file in the same
// directory, fsync, rename over path, fsync of the directory. A crash leaves
// either the old file or the new one, never a half-written one.
func WriteFile(path string, data []byte, perm fs.FileMode) error {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	tmp := f.Name()
	ok := false
	defer func() {
		if !ok {
			_ = f.Close()
			_ = os.Remove(tmp)
		}
	}()
	if err := f.Chmod(perm); err != nil {
		return fmt.Errorf("writing %s: setting mode: %w", path, err)
	}
	if _, err := f.Write(data); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("writing %s: fsync: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("writing %s: rename: %w", path, err)
	}
	ok = true
	_ = dirsync.Sync(dir) // the rename is done; a crash may only undo it
	return nil
}

// ErrKeyFileMode is returned when a private key file can be read by its
// group or by other users.
var ErrKeyFileMode = errors.New("private key file is readable by group or others")

// ReadSecretFile reads a file holding secret material. It refuses a file
// that its group or other users may read (chmod 600 fixes it), following
// symlinks as a mounted Kubernetes Secret has them: the mode that counts is
// the target's.
//
// One exception, as PostgreSQL makes for its key: a file owned by root may
// also be readable by its group (0440, 0640), because that is how kubelet
// mounts a Secret for a non-root pod: root's file, the pod's fsGroup as its
// group, group read added. Others may never read it, and nobody but root
// may write it.
func ReadSecretFile(path string) ([]byte, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("reading secret file: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("reading secret file %s: not a regular file", path)
	}
	if !SecretModeOK(fi) {
		return nil, fmt.Errorf("reading secret file %s: %w (mode %04o; run chmod 600 %s, or set defaultMode: 0400 on the Secret volume)",
			path, ErrKeyFileMode, fi.Mode().Perm(), path)
	}
	b, err := fileread.Read(path, MaxFileSize)
	if err != nil {
		return nil, fmt.Errorf("reading secret file: %w", err)
	}
	return b, nil
}

// MaxFileSize caps every key, certificate and pin file this package reads:
// the largest real one (a PEM certificate chain) is a few KiB.
const MaxFileSize = 64 << 10

// SecretModeOK reports whether a secret file's owner and mode keep it
// secret: nobody but its owner may read it, or, for a file owned by root,
// its owner and group (see ReadSecretFile).
func SecretModeOK(fi fs.FileInfo) bool {
	perm := fi.Mode().Perm()
	return perm&0o077 == 0 || perm&0o037 == 0 && ownedByRoot(fi)
}

// LoadPrivateKey reads a WireGuard private key file (base64, as `wg genkey`
// writes it) with ReadSecretFile's mode check.
func LoadPrivateKey(path string) (PrivateKey, error) {
	b, err := ReadSecretFile(path)
	if err != nil {
		return PrivateKey{}, err
	}
	k, err := ParsePrivateKey(string(b))
	if err != nil {
		return PrivateKey{}, fmt.Errorf("%s: %w", path, err)
	}
	return k, nil
}

// LoadPresharedKey reads a WireGuard preshared key file (base64, as `wg
// genpsk` writes it) with ReadSecretFile's mode check.
func LoadPresharedKey(path string) (PrivateKey, error) {
	b, err := ReadSecretFile(path)
	if err != nil {
		return PrivateKey{}, err
	}
	raw, err := decodeKey(string(b))
	if err != nil {
		return PrivateKey{}, fmt.Errorf("%s: parsing preshared key: %w", path, err)
	}
	k := PrivateKey(raw)
	if k.IsZero() {
		return PrivateKey{}, fmt.Errorf("%s: parsing preshared key: %w: all zeros", path, ErrWeakKey)
	}
	return k, nil
}

// LoadPublicKey reads a file holding one base64 public key.
func LoadPublicKey(path string) (PublicKey, error) {
	b, err := fileread.Read(path, MaxFileSize)
	if err != nil {
		return PublicKey{}, fmt.Errorf("reading public key: %w", err)
	}
	k, err := ParsePublicKey(strings.TrimSpace(string(b)))
	if err != nil {
		return PublicKey{}, fmt.Errorf("%s: %w", path, err)
	}
	return k, nil
}

// GeneratePresharedKey returns 32 random bytes, as `wg genpsk` does.
func GeneratePresharedKey() (PrivateKey, error) {
	var k PrivateKey
	if _, err := randRead(k[:]); err != nil {
		return PrivateKey{}, fmt.Errorf("reading random bytes for a preshared key: %w", err)
	}
	return k, nil
}
