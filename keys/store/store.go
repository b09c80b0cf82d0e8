package store

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/tunnel-dev/tunnel/keys"
)

// Version identifies a store's contents at one moment: a content hash for
// a directory, the resourceVersion for a Secret. The empty Version is a
// store that does not exist yet.
type Version string

// Snapshot is a store's items as read at one Version.
type Snapshot struct {
	Items   map[string][]byte
	Version Version
}

// Has reports whether the snapshot holds an item named name.
func (s Snapshot) Has(name string) bool {
	_, ok := s.Items[name]
	return ok
}

// Names lists the snapshot's item names, sorted.
func (s Snapshot) Names() []string {
	return slices.Sorted(maps.Keys(s.Items))
}

// Change is what a write does: items to set (created or replaced) and
// items to delete. Items it does not name are left as they are.
type Change struct {
	Set    map[string][]byte
	Delete []string
}

// Empty reports whether the change does nothing at all.
func (c Change) Empty() bool { return len(c.Set) == 0 && len(c.Delete) == 0 }

// Validate checks the change's names: each a valid item name, none both
// set and deleted.
func (c Change) Validate() error {
	for name, v := range c.Set {
		if err := ValidName(name); err != nil {
			return err
		}
		if len(v) > MaxItemSize {
			return fmt.Errorf("item %s: %d bytes, more than %d", name, len(v), MaxItemSize)
		}
	}
	for _, name := range c.Delete {
		if err := ValidName(name); err != nil {
			return err
		}
		if _, ok := c.Set[name]; ok {
			return fmt.Errorf("item %s is both set and deleted", name)
		}
	}
	return nil
}

// Apply returns items with the change made, leaving items untouched.
func (c Change) Apply(items map[string][]byte) map[string][]byte {
	out := maps.Clone(items)
	if out == nil {
		out = map[string][]byte{}
	}
	for name, v := range c.Set {
		out[name] = slices.Clone(v)
	}
	for _, name := range c.Delete {
		delete(out, name)
	}
	return out
}

// Describe says what the change does, naming items and never showing
// their contents: "set next.key; delete old.key".
func (c Change) Describe() string {
	var parts []string
	for _, name := range slices.Sorted(maps.Keys(c.Set)) {
		parts = append(parts, "set "+name)
	}
	for _, name := range slices.Sorted(slices.Values(c.Delete)) {
		parts = append(parts, "delete "+name)
	}
	if len(parts) == 0 {
		return "nothing"
	}
	return strings.Join(parts, "; ")
}

// Store is one gateway's key store.
type Store interface {
	// Load reads every item.
	Load(ctx context.Context) (Snapshot, error)
	// Write makes ch, provided the store is still at base; otherwise it
	// changes nothing and returns an error wrapping ErrConflict. It
	// returns the store as written.
	Write(ctx context.Context, base Version, ch Change) (Snapshot, error)
	// String is the store's address, such as dir:/etc/tunnel/keys. It
	// never holds a secret.
	String() string
}

// Updater is a store with its own read-change-write loop; Update uses it
// when a store has one (the Secret store retries with client-go's
// retry.RetryOnConflict).
type Updater interface {
	Update(ctx context.Context, change func(Snapshot) (Change, error)) (Snapshot, error)
}

var (
	// ErrConflict: the store changed between the read a write was based
	// on and the write.
	ErrConflict = errors.New("the store changed since it was read")
	// ErrNotFound: the store (directory or Secret) does not exist.
	ErrNotFound = errors.New("no such key store")
)

// Backoff is the retry schedule of Update after a conflict: Steps
// attempts, waits starting at Duration, growing by Factor, each lengthened
// by up to Jitter of itself.
type Backoff struct {
	Steps    int
	Duration time.Duration
	Factor   float64
	Jitter   float64
}

// DefaultBackoff retries for a little over a second in all: enough for a
// handful of writers racing on one store.
func DefaultBackoff() Backoff {
	return Backoff{Steps: 10, Duration: 10 * time.Millisecond, Factor: 1.5, Jitter: 0.5}
}

// Update reads s, calls change with what it read, and writes the result
// if it changes anything, retrying from the read when another writer got
// there first. change may be called more than once and must decide from
// its argument alone. An error from change ends Update with that error.
func Update(ctx context.Context, s Store, change func(Snapshot) (Change, error)) (Snapshot, error) {
	if u, ok := s.(Updater); ok {
		return u.Update(ctx, change)
	}
	return UpdateWith(ctx, s, DefaultBackoff(), change)
}

// UpdateWith is Update with a retry schedule of its own, for stores that
// implement Updater with it.
func UpdateWith(ctx context.Context, s Store, b Backoff, change func(Snapshot) (Change, error)) (Snapshot, error) {
	wait := b.Duration
	var last error
	for attempt := range max(b.Steps, 1) {
		if attempt > 0 {
			d := wait + time.Duration(rand.Float64()*b.Jitter*float64(wait))
			select {
			case <-ctx.Done():
				return Snapshot{}, fmt.Errorf("updating %s: %w (after: %w)", s, ctx.Err(), last)
			case <-time.After(d):
			}
			wait = time.Duration(float64(wait) * max(b.Factor, 1))
		}
		snap, err := s.Load(ctx)
		if err != nil {
			return Snapshot{}, err
		}
		ch, err := change(snap)
		if err != nil {
			return Snapshot{}, err
		}
		if ch.Empty() {
			return snap, nil
		}
		out, err := s.Write(ctx, snap.Version, ch)
		if err == nil {
			return out, nil
		}
		if !errors.Is(err, ErrConflict) {
			return Snapshot{}, err
		}
		last = err
	}
	return Snapshot{}, fmt.Errorf("updating %s: gave up after %d attempts: %w", s, max(b.Steps, 1), last)
}

// MaxItemSize bounds one item: a Secret holds at most 1 MiB in all.
const MaxItemSize = 1 << 20

// itemNameRE is what a Secret key may be; we also refuse a leading dot,
// which a directory hides (and kubelet reserves "..").
var itemNameRE = regexp.MustCompile(`^[-_a-zA-Z0-9][-._a-zA-Z0-9]*$`)

// ValidName checks an item name: what a Kubernetes Secret key may be
// ([-._a-zA-Z0-9], up to 253), not starting with a dot.
func ValidName(name string) error {
	if len(name) > 253 || !itemNameRE.MatchString(name) {
		return fmt.Errorf("%q is not a valid key store item name (up to 253 of A-Z a-z 0-9 - _ . , not starting with a dot)", name)
	}
	return nil
}

// IsSecret reports whether an item holds secret material by its name:
// "*.key" other than public.key. Secret items are written 0600, others
// 0644, and a directory whose secret item others can read is refused.
func IsSecret(name string) bool {
	return strings.HasSuffix(name, ".key") && name != keys.PublicKeyFile
}

// contentVersion hashes items: names and contents, in name order.
func contentVersion(items map[string][]byte) Version {
	h := sha256.New()
	var n [8]byte
	for _, name := range slices.Sorted(maps.Keys(items)) {
		binary.BigEndian.PutUint64(n[:], uint64(len(name)))
		h.Write(n[:])
		h.Write([]byte(name))
		binary.BigEndian.PutUint64(n[:], uint64(len(items[name])))
		h.Write(n[:])
		h.Write(items[name])
	}
	return Version("sha256:" + hex.EncodeToString(h.Sum(nil)))
}
