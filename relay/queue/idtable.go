package queue

import "encoding/binary"

// idTable finds a live job's arena slot by its id: open addressing with
// linear probing over a table of slots (4 bytes a job at most half full,
// against some 40 in a Go map of 16-byte keys), the ids themselves read
// from the arena. Its table lives outside the Go heap like the arena.
type idTable struct {
	a     *arena
	slots []uint32 // slot+1, or 0 for empty
	n     int
}

// hash spreads an id over the table. Ids made in one millisecond differ
// only in their last bytes (they count up), so every bit is mixed into
// the low ones the table uses (MurmurHash3's finalizer).
func (t *idTable) hash(id *[16]byte) uint64 {
	h := binary.BigEndian.Uint64(id[8:]) ^ binary.BigEndian.Uint64(id[:8])*0x9e3779b97f4a7c15
	h ^= h >> 33
	h *= 0xff51afd7ed558ccd
	h ^= h >> 33
	h *= 0xc4ceb9fe1a85ec53
	h ^= h >> 33
	return h
}

func (t *idTable) mask() uint64 { return uint64(len(t.slots) - 1) }

// get is the slot of id.
func (t *idTable) get(id [16]byte) (uint32, bool) {
	if t.n == 0 {
		return 0, false
	}
	m := t.mask()
	for i := t.hash(&id) & m; ; i = (i + 1) & m {
		s := t.slots[i]
		if s == 0 {
			return 0, false
		}
		if t.a.at(s-1).id == id {
			return s - 1, true
		}
	}
}

// put records that id (not in the table) is at slot.
func (t *idTable) put(id [16]byte, slot uint32) {
	if 2*(t.n+1) > len(t.slots) {
		t.grow()
	}
	m := t.mask()
	i := t.hash(&id) & m
	for t.slots[i] != 0 {
		i = (i + 1) & m
	}
	t.slots[i] = slot + 1
	t.n++
}

// remove forgets id, shifting the entries after it back so no probe
// sequence is cut.
func (t *idTable) remove(id [16]byte) {
	if t.n == 0 {
		return
	}
	m := t.mask()
	i := t.hash(&id) & m
	for {
		s := t.slots[i]
		if s == 0 {
			return
		}
		if t.a.at(s-1).id == id {
			break
		}
		i = (i + 1) & m
	}
	t.slots[i] = 0
	t.n--
	for j := (i + 1) & m; t.slots[j] != 0; j = (j + 1) & m {
		s := t.slots[j]
		k := t.hash(&t.a.at(s-1).id) & m
		// Move s into the hole at i unless its home k lies cyclically
		// in (i, j].
		if (j > i && (k <= i || k > j)) || (j < i && k <= i && k > j) {
			t.slots[i], t.slots[j] = s, 0
			i = j
		}
	}
}

func (t *idTable) grow() {
	old := t.slots
	size := max(1024, 2*len(old))
	t.slots = newSlots(size)
	t.n = 0
	m := t.mask()
	for _, s := range old {
		if s == 0 {
			continue
		}
		i := t.hash(&t.a.at(s-1).id) & m
		for t.slots[i] != 0 {
			i = (i + 1) & m
		}
		t.slots[i] = s
		t.n++
	}
	freeSlots(old)
}

// reset frees the table; only while it is empty.
func (t *idTable) reset() {
	freeSlots(t.slots)
	t.slots, t.n = nil, 0
}
