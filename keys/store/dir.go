package store

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/tunnel-dev/tunnel/internal/dirsync"
	"github.com/tunnel-dev/tunnel/keys"
)

// Dir is a key store in a directory, one file per item. It reads and
// writes two layouts:
//
//   - kubelet's, as a mounted Secret or ConfigMap is laid out: the items
//     live in a timestamped directory ("..2026_11_25_10_00_00.123"), a
//     symlink "..data" points at it, and each item is a symlink
//     "name -> ..data/name". Reading resolves ..data once, so a read sees
//     one version whole. Writing does what kubelet does: a new timestamped
//     directory, then an atomic rename of a new ..data symlink over the old
//     one, then the item symlinks, then the old directory goes. A reader
//     (the gateway's watcher) sees the old set or the new one, never a mix.
//   - plain: regular files. Each item is replaced atomically (temp file,
//     fsync, rename) by keys.WriteFile; a write that sets and deletes items
//     sets them first, so an interrupted write never loses a key it was
//     moving.
//
// Files whose names start with a dot, directories and names that cannot be
// Secret keys are not items and are left alone. Secret items (*.key but
// public.key) are written 0600, or with the mode the item had; a secret
// item that its group or others may read is refused, as the gateway
// refuses it.
//
// Writers of one directory exclude each other with flock(2) on the
// directory, and each write is a compare-and-swap on the content hash, so
// a write computed from a stale read fails with ErrConflict.
type Dir struct {
	path string
}

// NewDir returns the store in directory path.
func NewDir(path string) *Dir { return &Dir{path: filepath.Clean(path)} }

// Path is the directory.
func (d *Dir) Path() string { return d.path }

// String is the store's address: "dir:<path>".
func (d *Dir) String() string { return "dir:" + d.path }

const (
	dataLink    = "..data"
	dataTmpLink = "..data_tmp"
	// tsPrefix is kubelet's name for a version's directory, before the
	// random suffix os.MkdirTemp adds.
	tsPrefix = "..2006_01_02_15_04_05."
	// readAttempts bounds re-reads of a kubelet directory whose ..data
	// moved while it was being read.
	readAttempts = 5
)

// tsDirRE matches the version directories kubelet and Dir make.
var tsDirRE = regexp.MustCompile(`^\.\.\d{4}_\d{2}_\d{2}_\d{2}_\d{2}_\d{2}\.\d+$`)

// dirState is a directory as read.
type dirState struct {
	items   map[string][]byte
	modes   map[string]fs.FileMode
	kubelet bool
	ts      string // kubelet layout: the directory ..data points at
}

// Load reads every item.
func (d *Dir) Load(ctx context.Context) (Snapshot, error) {
	if err := ctx.Err(); err != nil {
		return Snapshot{}, err
	}
	st, err := d.read()
	if err != nil {
		return Snapshot{}, err
	}
	return Snapshot{Items: st.items, Version: contentVersion(st.items)}, nil
}

func (d *Dir) read() (dirState, error) {
	fi, err := os.Stat(d.path)
	if errors.Is(err, fs.ErrNotExist) {
		return dirState{}, fmt.Errorf("reading %s: %w: the directory does not exist", d, ErrNotFound)
	}
	if err != nil {
		return dirState{}, fmt.Errorf("reading %s: %w", d, err)
	}
	if !fi.IsDir() {
		return dirState{}, fmt.Errorf("reading %s: not a directory", d)
	}
	link := filepath.Join(d.path, dataLink)
	target, err := os.Readlink(link)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		items, modes, err := d.readFiles(d.path)
		return dirState{items: items, modes: modes}, err
	case err != nil:
		return dirState{}, fmt.Errorf("reading %s: %s is not a symlink as kubelet makes it: %w", d, link, err)
	}
	for range readAttempts {
		if filepath.IsAbs(target) || strings.Contains(target, "/") {
			return dirState{}, fmt.Errorf("reading %s: %s points at %q, outside the directory", d, link, target)
		}
		items, modes, rerr := d.readFiles(filepath.Join(d.path, target))
		again, err := os.Readlink(link)
		if err != nil {
			return dirState{}, fmt.Errorf("reading %s: %w", d, err)
		}
		if again == target {
			if rerr != nil {
				return dirState{}, rerr
			}
			return dirState{items: items, modes: modes, kubelet: true, ts: target}, nil
		}
		// Swapped while we read (a writer removes the old version right
		// after the swap, so a failed read may be that): read the new one.
		target = again
	}
	return dirState{}, fmt.Errorf("reading %s: ..data changed %d times while being read", d, readAttempts)
}

// readFiles reads the items in dir: regular files (or symlinks to them)
// with valid item names.
func (d *Dir) readFiles(dir string) (map[string][]byte, map[string]fs.FileMode, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, nil, fmt.Errorf("reading %s: %w", d, err)
	}
	items := map[string][]byte{}
	modes := map[string]fs.FileMode{}
	for _, e := range entries {
		name := e.Name()
		if ValidName(name) != nil {
			continue // dotfiles, kubelet's own entries, odd names
		}
		path := filepath.Join(dir, name)
		fi, err := os.Stat(path)
		if err != nil || !fi.Mode().IsRegular() {
			continue // a directory, a dangling link
		}
		if fi.Size() > MaxItemSize {
			return nil, nil, fmt.Errorf("reading %s: %s is %d bytes, more than a key store item may be (%d)", d, name, fi.Size(), MaxItemSize)
		}
		if IsSecret(name) && !keys.SecretModeOK(fi) {
			return nil, nil, fmt.Errorf("reading %s: %s: %w (mode %04o; run chmod 600 on it, or set defaultMode: 0400 on the Secret volume)",
				d, name, keys.ErrKeyFileMode, fi.Mode().Perm())
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return nil, nil, fmt.Errorf("reading %s: %w", d, err)
		}
		items[name] = b
		modes[name] = fi.Mode().Perm()
	}
	return items, modes, nil
}

// Write makes ch if the directory's items still hash to base. The empty
// base is a directory that does not exist yet or holds no items; it is
// created (0700) if missing.
func (d *Dir) Write(ctx context.Context, base Version, ch Change) (Snapshot, error) {
	if err := ch.Validate(); err != nil {
		return Snapshot{}, fmt.Errorf("writing %s: %w", d, err)
	}
	if base == "" {
		if err := os.MkdirAll(d.path, 0o700); err != nil {
			return Snapshot{}, fmt.Errorf("writing %s: %w", d, err)
		}
	}
	unlock, err := lockDir(ctx, d.path)
	if err != nil {
		return Snapshot{}, fmt.Errorf("writing %s: %w", d, err)
	}
	defer unlock()
	st, err := d.read()
	if err != nil {
		return Snapshot{}, err
	}
	cur := contentVersion(st.items)
	if cur != base && !(base == "" && len(st.items) == 0) {
		return Snapshot{}, fmt.Errorf("writing %s: %w", d, ErrConflict)
	}
	next := ch.Apply(st.items)
	if maps.EqualFunc(next, st.items, bytes.Equal) {
		return Snapshot{Items: st.items, Version: cur}, nil
	}
	if st.kubelet {
		err = d.writeKubelet(st, next)
	} else {
		err = d.writePlain(st, ch)
	}
	if err != nil {
		return Snapshot{}, fmt.Errorf("writing %s: %w", d, err)
	}
	return Snapshot{Items: next, Version: contentVersion(next)}, nil
}

// modeFor is the mode a new item gets.
func modeFor(name string) fs.FileMode {
	if IsSecret(name) {
		return 0o600
	}
	return 0o644
}

func (st dirState) mode(name string) fs.FileMode {
	if m, ok := st.modes[name]; ok {
		return m
	}
	return modeFor(name)
}

// writePlain replaces each set item atomically, then deletes.
func (d *Dir) writePlain(st dirState, ch Change) error {
	d.removeStaleTemps()
	for _, name := range slices.Sorted(maps.Keys(ch.Set)) {
		if err := keys.WriteFile(filepath.Join(d.path, name), ch.Set[name], st.mode(name)); err != nil {
			return err
		}
	}
	for _, name := range ch.Delete {
		if err := os.Remove(filepath.Join(d.path, name)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("deleting %s: %w", name, err)
		}
	}
	return dirsync.Sync(d.path)
}

// removeStaleTemps removes temp files an interrupted keys.WriteFile left.
// Called under the lock, so no write of ours is in flight.
func (d *Dir) removeStaleTemps() {
	entries, err := os.ReadDir(d.path)
	if err != nil {
		return
	}
	for _, e := range entries {
		if n := e.Name(); strings.HasPrefix(n, ".") && strings.Contains(n, ".tmp-") && e.Type().IsRegular() {
			_ = os.Remove(filepath.Join(d.path, n))
		}
	}
}

// writeKubelet publishes next as a new version, the way kubelet's atomic
// writer does.
func (d *Dir) writeKubelet(st dirState, next map[string][]byte) (err error) {
	ts, err := os.MkdirTemp(d.path, time.Now().UTC().Format(tsPrefix))
	if err != nil {
		return fmt.Errorf("creating a version directory: %w", err)
	}
	swapped := false
	defer func() {
		if !swapped {
			_ = os.RemoveAll(ts)
		}
	}()
	if err := os.Chmod(ts, 0o755); err != nil {
		return fmt.Errorf("creating a version directory: %w", err)
	}
	for _, name := range slices.Sorted(maps.Keys(next)) {
		if err := writeNew(filepath.Join(ts, name), next[name], st.mode(name)); err != nil {
			return err
		}
	}
	if err := dirsync.Sync(ts); err != nil {
		return err
	}
	tmp := filepath.Join(d.path, dataTmpLink)
	if err := os.Remove(tmp); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("removing a stale %s: %w", dataTmpLink, err)
	}
	if err := os.Symlink(filepath.Base(ts), tmp); err != nil {
		return fmt.Errorf("linking the new version: %w", err)
	}
	if err := os.Rename(tmp, filepath.Join(d.path, dataLink)); err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("swapping %s: %w", dataLink, err)
	}
	swapped = true
	if err := dirsync.Sync(d.path); err != nil {
		return err
	}
	// The swap is the write; what follows tidies the user-visible links.
	var errs []error
	for name := range next {
		if _, had := st.items[name]; had {
			continue
		}
		link := filepath.Join(d.path, name)
		if t, err := os.Readlink(link); err == nil && t == filepath.Join(dataLink, name) {
			continue
		}
		if err := os.Symlink(filepath.Join(dataLink, name), link); err != nil {
			errs = append(errs, fmt.Errorf("linking %s: %w", name, err))
		}
	}
	for name := range st.items {
		if _, keep := next[name]; keep {
			continue
		}
		link := filepath.Join(d.path, name)
		if fi, err := os.Lstat(link); err == nil && fi.Mode()&fs.ModeSymlink != 0 {
			if err := os.Remove(link); err != nil {
				errs = append(errs, fmt.Errorf("unlinking %s: %w", name, err))
			}
		}
	}
	d.removeOldVersions(filepath.Base(ts))
	if len(errs) > 0 {
		return fmt.Errorf("the new version is in place, but: %w", errors.Join(errs...))
	}
	return dirsync.Sync(d.path)
}

// removeOldVersions removes version directories other than keep: the one
// just replaced, and any an interrupted write left behind.
func (d *Dir) removeOldVersions(keep string) {
	entries, err := os.ReadDir(d.path)
	if err != nil {
		return
	}
	for _, e := range entries {
		if n := e.Name(); n != keep && e.IsDir() && tsDirRE.MatchString(n) {
			_ = os.RemoveAll(filepath.Join(d.path, n))
		}
	}
}

// writeNew creates path with data and mode, and fsyncs it.
func writeNew(path string, data []byte, mode fs.FileMode) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("writing %s: %w", filepath.Base(path), err)
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Chmod(mode)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("writing %s: %w", filepath.Base(path), err)
	}
	return nil
}
