package bench

import (
	"container/heap"
	"math/rand/v2"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"
)

// Link describes an emulated link between the two gateways.
type Link struct {
	// Delay is added one way (RTT is twice it).
	Delay time.Duration `json:"delay"`
	// Loss is the fraction of datagrams dropped, each way.
	Loss float64 `json:"loss"`
	// Reorder is the fraction of datagrams held back an extra Delay/2 (at
	// least 1 ms), so that later ones overtake them.
	Reorder float64 `json:"reorder"`
}

// Emulated reports whether the link changes anything.
func (l Link) Emulated() bool { return l.Delay > 0 || l.Loss > 0 || l.Reorder > 0 }

// netem is a UDP proxy standing between eks and aks: eks dials it, it
// forwards to aks, replies come back.
type netem struct {
	link  Link
	front *net.UDPConn // eks talks to this
	back  *net.UDPConn // connected to aks
	eks   atomic.Pointer[netip.AddrPort]
	wg    sync.WaitGroup
}

func startNetem(link Link, aks netip.AddrPort) (*netem, error) {
	front, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		return nil, err
	}
	back, err := net.DialUDP("udp4", nil, net.UDPAddrFromAddrPort(aks))
	if err != nil {
		front.Close()
		return nil, err
	}
	for _, c := range []*net.UDPConn{front, back} {
		_ = c.SetReadBuffer(8 << 20)
		_ = c.SetWriteBuffer(8 << 20)
	}
	n := &netem{link: link, front: front, back: back}
	n.wg.Add(2)
	go n.pump(func(b []byte) (int, error) {
		k, from, err := front.ReadFromUDPAddrPort(b)
		if err == nil {
			n.eks.Store(&from)
		}
		return k, err
	}, func(b []byte) { _, _ = back.Write(b) })
	go n.pump(back.Read, func(b []byte) {
		if to := n.eks.Load(); to != nil {
			_, _ = front.WriteToUDPAddrPort(b, *to)
		}
	})
	return n, nil
}

// Addr is where eks should dial.
func (n *netem) Addr() string { return n.front.LocalAddr().String() }

type delayed struct {
	due time.Time
	seq uint64 // keeps equal due times in arrival order
	b   []byte
}

// delayQueue is a min-heap of datagrams by due time.
type delayQueue []delayed

func (q delayQueue) Len() int { return len(q) }
func (q delayQueue) Less(i, j int) bool {
	if q[i].due.Equal(q[j].due) {
		return q[i].seq < q[j].seq
	}
	return q[i].due.Before(q[j].due)
}
func (q delayQueue) Swap(i, j int) { q[i], q[j] = q[j], q[i] }
func (q *delayQueue) Push(x any)   { *q = append(*q, x.(delayed)) }
func (q *delayQueue) Pop() any {
	old := *q
	d := old[len(old)-1]
	*q = old[:len(old)-1]
	return d
}

// queueLimit bounds datagrams in flight on one direction of the link.
const queueLimit = 1 << 16

// pump moves datagrams one way through the emulated link: each is dropped
// with probability Loss, or sent once its due time (now + Delay, plus a
// reordering hold-back for some) has come.
func (n *netem) pump(read func([]byte) (int, error), write func([]byte)) {
	defer n.wg.Done()
	var mu sync.Mutex
	var q delayQueue
	wake := make(chan struct{}, 1)
	done := make(chan struct{})
	var sender sync.WaitGroup
	sender.Add(1)
	go func() {
		defer sender.Done()
		for {
			mu.Lock()
			var next time.Duration = -1
			for q.Len() > 0 {
				if wait := time.Until(q[0].due); wait > 0 {
					next = wait
					break
				}
				d := heap.Pop(&q).(delayed)
				mu.Unlock()
				write(d.b)
				mu.Lock()
			}
			mu.Unlock()
			var timer <-chan time.Time
			if next >= 0 {
				timer = time.After(next)
			}
			select {
			case <-wake:
			case <-timer:
			case <-done:
				return
			}
		}
	}()
	defer func() { close(done); sender.Wait() }()
	var seq uint64
	for {
		buf := make([]byte, 65535)
		k, err := read(buf)
		if err != nil {
			return
		}
		if n.link.Loss > 0 && rand.Float64() < n.link.Loss {
			continue
		}
		due := time.Now().Add(n.link.Delay)
		if n.link.Reorder > 0 && rand.Float64() < n.link.Reorder {
			due = due.Add(max(n.link.Delay/2, time.Millisecond))
		}
		seq++
		mu.Lock()
		if q.Len() < queueLimit {
			heap.Push(&q, delayed{due: due, seq: seq, b: buf[:k]})
		}
		mu.Unlock()
		select {
		case wake <- struct{}{}:
		default:
		}
	}
}

func (n *netem) Close() {
	n.front.Close()
	n.back.Close()
	n.wg.Wait()
}
