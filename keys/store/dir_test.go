package store_test

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tunnel-dev/tunnel/internal/kubelet"
	"github.com/tunnel-dev/tunnel/keys"
	"github.com/tunnel-dev/tunnel/keys/store"
)

// layouts are the two ways a key directory is laid out: plain files, and
// a mounted Secret's, as a kubelet (written independently of store.Dir)
// publishes it.
var layouts = []struct {
	name    string
	publish func(t *testing.T, dir string, items map[string][]byte)
}{
	{"plain", func(t *testing.T, dir string, items map[string][]byte) {
		t.Helper()
		if err := os.MkdirAll(dir, 0o700); err != nil {
			t.Fatal(err)
		}
		for name, b := range items {
			mode := fs.FileMode(0o644)
			if store.IsSecret(name) {
				mode = 0o600
			}
			if err := os.WriteFile(filepath.Join(dir, name), b, mode); err != nil {
				t.Fatal(err)
			}
		}
	}},
	{"kubelet", func(t *testing.T, dir string, items map[string][]byte) {
		t.Helper()
		(&kubelet.Volume{Dir: dir, Mode: 0o400}).Publish(t, items)
	}},
}

func privateKeyBytes(t *testing.T) []byte {
	t.Helper()
	k, err := keys.GeneratePrivateKey()
	if err != nil {
		t.Fatal(err)
	}
	return []byte(k.Base64() + "\n")
}

func mustLoad(t *testing.T, s store.Store) store.Snapshot {
	t.Helper()
	snap, err := s.Load(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return snap
}

// Reading and writing each layout: items round-trip, modes are right,
// non-items are left alone, and a write keeps the layout it found.
func TestDirReadWrite(t *testing.T) {
	ctx := context.Background()
	for _, l := range layouts {
		t.Run(l.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "keys")
			priv := privateKeyBytes(t)
			l.publish(t, dir, map[string][]byte{keys.PrivateKeyFile: priv, "peer.eks.pub": []byte("A\n")})
			// Not items: a dotfile and a directory.
			if err := os.WriteFile(filepath.Join(dir, ".hidden"), []byte("x"), 0o600); err != nil {
				t.Fatal(err)
			}
			if err := os.Mkdir(filepath.Join(dir, "sub"), 0o700); err != nil {
				t.Fatal(err)
			}
			d := store.NewDir(dir)
			snap := mustLoad(t, d)
			if got := strings.Join(snap.Names(), ","); got != "peer.eks.pub,private.key" {
				t.Fatalf("items %s", got)
			}
			if string(snap.Items[keys.PrivateKeyFile]) != string(priv) {
				t.Fatal("private.key read wrong")
			}
			next := privateKeyBytes(t)
			out, err := d.Write(ctx, snap.Version, store.Change{
				Set:    map[string][]byte{keys.NextKeyFile: next, "peer.eks.pub": []byte("A\nB\n")},
				Delete: []string{"absent.key"},
			})
			if err != nil {
				t.Fatal(err)
			}
			again := mustLoad(t, d)
			if again.Version != out.Version || again.Version == snap.Version {
				t.Fatalf("versions: before %s, written %s, read %s", snap.Version, out.Version, again.Version)
			}
			if string(again.Items[keys.NextKeyFile]) != string(next) || string(again.Items["peer.eks.pub"]) != "A\nB\n" || len(again.Items) != 3 {
				t.Fatalf("after the write: %v", again.Names())
			}
			// Through the paths a gateway reads: the item names in dir.
			for name, want := range map[string]string{keys.NextKeyFile: string(next), "peer.eks.pub": "A\nB\n"} {
				b, err := os.ReadFile(filepath.Join(dir, name))
				if err != nil || string(b) != want {
					t.Fatalf("%s through the directory: %q %v", name, b, err)
				}
			}
			// A new secret item is 0600; the private key keeps its mode
			// (kubelet's defaultMode 0400); the gateway's check passes.
			fi, err := os.Stat(filepath.Join(dir, keys.NextKeyFile))
			if err != nil || fi.Mode().Perm() != 0o600 {
				t.Fatalf("next.key mode %v %v", fi.Mode(), err)
			}
			if _, err := keys.LoadPrivateKey(filepath.Join(dir, keys.NextKeyFile)); err != nil {
				t.Fatal(err)
			}
			wantPriv := fs.FileMode(0o600)
			if l.name == "kubelet" {
				wantPriv = 0o400
			}
			if fi, err := os.Stat(filepath.Join(dir, keys.PrivateKeyFile)); err != nil || fi.Mode().Perm() != wantPriv {
				t.Fatalf("private.key mode %v %v, want %v", fi.Mode(), err, wantPriv)
			}
			if _, err := os.Stat(filepath.Join(dir, ".hidden")); err != nil {
				t.Fatalf("a dotfile was touched: %v", err)
			}
			// The write kept the layout: kubelet's gets a new version dir
			// and ..data swapped onto it, the old version removed.
			link, err := os.Readlink(filepath.Join(dir, "..data"))
			if l.name == "plain" {
				if err == nil {
					t.Fatal("a plain directory got a ..data link")
				}
			} else {
				if err != nil || link == "..2026_01_01_00_00_00.1001" {
					t.Fatalf("..data is %q %v, want a new version", link, err)
				}
				if _, err := os.Stat(filepath.Join(dir, "..2026_01_01_00_00_00.1001")); !errors.Is(err, fs.ErrNotExist) {
					t.Fatalf("the old version directory is still there: %v", err)
				}
				if l, err := os.Readlink(filepath.Join(dir, keys.NextKeyFile)); err != nil || l != "..data/next.key" {
					t.Fatalf("next.key is not kubelet's symlink: %q %v", l, err)
				}
			}
			// Deleting removes the item, and in kubelet's layout its link.
			if _, err := d.Write(ctx, again.Version, store.Change{Delete: []string{keys.NextKeyFile}}); err != nil {
				t.Fatal(err)
			}
			if _, err := os.Lstat(filepath.Join(dir, keys.NextKeyFile)); !errors.Is(err, fs.ErrNotExist) {
				t.Fatalf("next.key after delete: %v", err)
			}
			if snap := mustLoad(t, d); snap.Has(keys.NextKeyFile) || len(snap.Items) != 2 {
				t.Fatalf("after delete: %v", snap.Names())
			}
		})
	}
}

// A write from a stale read fails with ErrConflict and changes nothing.
func TestDirConflict(t *testing.T) {
	ctx := context.Background()
	for _, l := range layouts {
		t.Run(l.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "keys")
			l.publish(t, dir, map[string][]byte{"a.pub": []byte("1")})
			d := store.NewDir(dir)
			stale := mustLoad(t, d)
			if _, err := d.Write(ctx, stale.Version, store.Change{Set: map[string][]byte{"a.pub": []byte("2")}}); err != nil {
				t.Fatal(err)
			}
			_, err := d.Write(ctx, stale.Version, store.Change{Set: map[string][]byte{"a.pub": []byte("3"), "b.pub": []byte("x")}})
			if !errors.Is(err, store.ErrConflict) {
				t.Fatalf("stale write: %v", err)
			}
			if snap := mustLoad(t, d); string(snap.Items["a.pub"]) != "2" || snap.Has("b.pub") {
				t.Fatalf("a conflicting write changed the store: %v", snap.Items)
			}
		})
	}
}

// Writers racing on one directory, each incrementing a counter with
// Update: every increment lands (conflicts are detected and retried), and
// a reader never sees half a write.
func TestDirConcurrentWriters(t *testing.T) {
	const writers, each = 4, 10
	for _, l := range layouts {
		t.Run(l.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "keys")
			l.publish(t, dir, map[string][]byte{"count.pub": []byte("0"), "copy.pub": []byte("0")})
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			var wg sync.WaitGroup
			var conflicts sync.Map
			errs := make(chan error, writers)
			for w := range writers {
				wg.Go(func() {
					d := store.NewDir(dir) // a store of its own, as another process has
					for i := range each {
						n := 0
						_, err := store.Update(ctx, d, func(s store.Snapshot) (store.Change, error) {
							n++
							c, err := strconv.Atoi(string(s.Items["count.pub"]))
							if err != nil {
								return store.Change{}, err
							}
							v := []byte(strconv.Itoa(c + 1))
							return store.Change{Set: map[string][]byte{"count.pub": v, "copy.pub": v}}, nil
						})
						if err != nil {
							errs <- fmt.Errorf("writer %d, increment %d: %w", w, i, err)
							return
						}
						if n > 1 {
							conflicts.Store(fmt.Sprint(w, i), n)
						}
					}
				})
			}
			// A reader: count and copy are written together, so every
			// snapshot has them equal.
			stop := make(chan struct{})
			var torn []string
			var rwg sync.WaitGroup
			rwg.Go(func() {
				d := store.NewDir(dir)
				for {
					select {
					case <-stop:
						return
					default:
					}
					s, err := d.Load(ctx)
					if err != nil {
						torn = append(torn, err.Error())
						continue
					}
					if a, b := string(s.Items["count.pub"]), string(s.Items["copy.pub"]); a != b {
						torn = append(torn, a+"≠"+b)
					}
				}
			})
			wg.Wait()
			close(stop)
			rwg.Wait()
			close(errs)
			for err := range errs {
				t.Fatal(err)
			}
			if l.name == "kubelet" && len(torn) > 0 {
				t.Fatalf("the reader saw torn or failed reads: %v", torn[:min(5, len(torn))])
			}
			if got := string(mustLoad(t, store.NewDir(dir)).Items["count.pub"]); got != strconv.Itoa(writers*each) {
				t.Fatalf("count %s, want %d: an update was lost", got, writers*each)
			}
			n := 0
			conflicts.Range(func(_, _ any) bool { n++; return true })
			t.Logf("%s: %d increments by %d writers, %d of them retried after a conflict; the reader saw %d torn reads (plain files are replaced one by one)",
				l.name, writers*each, writers, n, len(torn))

		})
	}
}

// A secret item that others may read is refused, as the gateway refuses
// it; bad item names are refused before anything is written.
func TestDirRefuses(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	d := store.NewDir(dir)
	if err := os.WriteFile(filepath.Join(dir, keys.PrivateKeyFile), privateKeyBytes(t), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := d.Load(ctx); !errors.Is(err, keys.ErrKeyFileMode) || !strings.Contains(err.Error(), "chmod 600") {
		t.Fatalf("world-readable private.key: %v", err)
	}
	if err := os.Chmod(filepath.Join(dir, keys.PrivateKeyFile), 0o600); err != nil {
		t.Fatal(err)
	}
	snap := mustLoad(t, d)
	for _, bad := range []store.Change{
		{Set: map[string][]byte{"../escape": []byte("x")}},
		{Set: map[string][]byte{"..data": []byte("x")}},
		{Set: map[string][]byte{".hidden": []byte("x")}},
		{Set: map[string][]byte{"a b": []byte("x")}},
		{Delete: []string{"sub/x"}},
		{Set: map[string][]byte{"a.pub": []byte("x")}, Delete: []string{"a.pub"}},
		{Set: map[string][]byte{"big.pub": make([]byte, store.MaxItemSize+1)}},
	} {
		if _, err := d.Write(ctx, snap.Version, bad); err == nil {
			t.Errorf("wrote %s", bad.Describe())
		}
	}
	if after := mustLoad(t, d); after.Version != snap.Version {
		t.Fatal("a refused write changed the store")
	}
	if _, err := store.NewDir(filepath.Join(dir, "missing")).Load(ctx); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("missing directory: %v", err)
	}
}

// What an interrupted write leaves behind (a version directory never
// linked, a ..data_tmp, a temp file) is ignored by reads and cleared by
// the next write.
func TestDirInterruptedWriteLeftovers(t *testing.T) {
	ctx := context.Background()
	for _, l := range layouts {
		t.Run(l.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "keys")
			l.publish(t, dir, map[string][]byte{"a.pub": []byte("1")})
			leftovers := []string{".a.pub.tmp-123"}
			if l.name == "kubelet" {
				leftovers = []string{"..2026_01_01_00_00_01.999"}
				if err := os.Mkdir(filepath.Join(dir, leftovers[0]), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(filepath.Join(dir, leftovers[0], "a.pub"), []byte("half"), 0o644); err != nil {
					t.Fatal(err)
				}
				if err := os.Symlink(leftovers[0], filepath.Join(dir, "..data_tmp")); err != nil {
					t.Fatal(err)
				}
				leftovers = append(leftovers, "..data_tmp")
			} else if err := os.WriteFile(filepath.Join(dir, leftovers[0]), []byte("half"), 0o600); err != nil {
				t.Fatal(err)
			}
			d := store.NewDir(dir)
			snap := mustLoad(t, d)
			if string(snap.Items["a.pub"]) != "1" || len(snap.Items) != 1 {
				t.Fatalf("leftovers were read: %v", snap.Items)
			}
			if _, err := d.Write(ctx, snap.Version, store.Change{Set: map[string][]byte{"a.pub": []byte("2")}}); err != nil {
				t.Fatal(err)
			}
			for _, name := range leftovers {
				if _, err := os.Lstat(filepath.Join(dir, name)); !errors.Is(err, fs.ErrNotExist) {
					t.Errorf("%s survived the next write: %v", name, err)
				}
			}
			if got := string(mustLoad(t, d).Items["a.pub"]); got != "2" {
				t.Fatalf("a.pub %q", got)
			}
		})
	}
}

// Update gives up with the change's own error, and writes nothing for an
// empty change.
func TestUpdate(t *testing.T) {
	ctx := context.Background()
	d := store.NewDir(t.TempDir())
	mine := errors.New("no")
	if _, err := store.Update(ctx, d, func(store.Snapshot) (store.Change, error) { return store.Change{}, mine }); !errors.Is(err, mine) {
		t.Fatalf("change error: %v", err)
	}
	before := mustLoad(t, d)
	out, err := store.Update(ctx, d, func(store.Snapshot) (store.Change, error) { return store.Change{}, nil })
	if err != nil || out.Version != before.Version {
		t.Fatalf("empty change: %v %v", out.Version, err)
	}
	// Another writer gets in between the read and the write: the write
	// conflicts, and Update reads again and calls change again.
	calls := 0
	out, err = store.Update(ctx, d, func(s store.Snapshot) (store.Change, error) {
		calls++
		if calls == 1 {
			other := store.NewDir(d.Path())
			if _, err := other.Write(ctx, s.Version, store.Change{Set: map[string][]byte{"other.pub": []byte("x")}}); err != nil {
				return store.Change{}, err
			}
		}
		return store.Change{Set: map[string][]byte{"mine.pub": []byte("y")}}, nil
	})
	if err != nil || calls != 2 || !out.Has("other.pub") || !out.Has("mine.pub") {
		t.Fatalf("update after a conflict: calls %d, items %v, %v", calls, out.Names(), err)
	}
	if got := (store.Change{Set: map[string][]byte{"b": nil, "a": nil}, Delete: []string{"c"}}).Describe(); got != "set a; set b; delete c" {
		t.Fatalf("Describe: %q", got)
	}
}
