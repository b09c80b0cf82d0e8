package queue

import (
	"math/rand/v2"
	"testing"
)

// The id table agrees with a map through random puts and removes, across
// growth and with ids that share their home buckets.
func TestIDTable(t *testing.T) {
	var a arena
	tab := idTable{a: &a}
	want := map[[16]byte]uint32{}
	rnd := rand.New(rand.NewPCG(1, 2))
	var ids [][16]byte
	for i := range 20_000 {
		var id [16]byte
		if i%3 == 0 {
			id[15] = byte(i) // many ids that differ in one byte
			id[14] = byte(i >> 8)
		} else {
			for k := range id {
				id[k] = byte(rnd.Uint32())
			}
		}
		if _, dup := want[id]; dup {
			continue
		}
		e := a.alloc(&entry{id: id})
		tab.put(id, e.slot)
		want[id] = e.slot
		ids = append(ids, id)
		if rnd.IntN(3) == 0 {
			victim := ids[rnd.IntN(len(ids))]
			if slot, ok := want[victim]; ok {
				tab.remove(victim)
				a.release(a.at(slot))
				delete(want, victim)
			}
		}
	}
	if tab.n != len(want) {
		t.Fatalf("table holds %d, want %d", tab.n, len(want))
	}
	for _, id := range ids {
		slot, ok := tab.get(id)
		wslot, wok := want[id]
		if ok != wok || (ok && slot != wslot) {
			t.Fatalf("get(%x) = %d %v, want %d %v", id, slot, ok, wslot, wok)
		}
	}
}
