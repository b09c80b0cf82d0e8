package handler

import (
	"bytes"
	"fmt"
	"os"
	"strconv"
	"syscall"
	"time"
)

const prSetChildSubreaper = 36 // linux/prctl.h

// NewReaper makes this process a child subreaper and returns the reaper
// that sweeps up after each job.
func NewReaper() (*Reaper, error) {
	if _, _, errno := syscall.RawSyscall(syscall.SYS_PRCTL, prSetChildSubreaper, 1, 0); errno != 0 {
		return nil, fmt.Errorf("becoming a child subreaper (prctl PR_SET_CHILD_SUBREAPER): %w", errno)
	}
	return &Reaper{running: map[int]bool{}, self: os.Getpid()}, nil
}

// sweepRounds and sweepEvery bound a sweep (to a second).
const (
	sweepRounds = 100
	sweepEvery  = 10 * time.Millisecond
)

// sweep kills and reaps what is left of a job: the members of its process
// group pgid and the orphans reparented to this process that carry the
// job's environment markers (or none at all). It looks again while any of
// them is alive, since a killed process's children are reparented only
// once it has died. It reports how many orphans it killed.
func (r *Reaper) sweep(pgid int, marks []string) int {
	killed := 0
	for range sweepRounds {
		_ = syscall.Kill(-pgid, syscall.SIGKILL)
		n, left := r.sweepOnce(pgid, marks)
		killed += n
		if !left {
			return killed
		}
		time.Sleep(sweepEvery)
	}
	return killed
}

// sweepOnce makes one pass over /proc: it reaps zombie orphans and kills
// the job's living ones. left reports that something of the job is still
// alive (a group member, an orphan just killed) or not yet reaped.
func (r *Reaper) sweepOnce(pgid int, marks []string) (killed int, left bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return 0, false
	}
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		st, ok := procStat(pid)
		if !ok {
			continue
		}
		if st.pgrp == pgid && st.state != 'Z' {
			left = true
		}
		if st.ppid != r.self || r.running[pid] {
			continue
		}
		// An orphan of ours: reap it if dead, kill it if the job's.
		if st.state == 'Z' {
			var ws syscall.WaitStatus
			_, _ = syscall.Wait4(pid, &ws, syscall.WNOHANG, nil)
			continue
		}
		if !jobsOrphan(pid, marks) {
			continue
		}
		if syscall.Kill(pid, syscall.SIGKILL) == nil {
			killed++
			left = true
		}
	}
	return killed, left
}

type procState struct {
	state      byte
	ppid, pgrp int
}

// procStat reads a process's state, parent and group from /proc/<pid>/stat.
func procStat(pid int) (procState, bool) {
	var st procState
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return st, false
	}
	// pid (comm) state ppid pgrp ...; comm may hold spaces and parentheses.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return st, false
	}
	f := bytes.Fields(b[i+1:])
	if len(f) < 3 || len(f[0]) != 1 {
		return st, false
	}
	st.state = f[0][0]
	ppid, err1 := strconv.Atoi(string(f[1]))
	pgrp, err2 := strconv.Atoi(string(f[2]))
	st.ppid, st.pgrp = ppid, pgrp
	return st, err1 == nil && err2 == nil
}

// jobsOrphan reports whether an orphan is the job's: its environment holds
// every mark, or no BUNNY_JOB_ID at all (or cannot be read).
func jobsOrphan(pid int, marks []string) bool {
	env, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/environ")
	if err != nil {
		return true
	}
	vars := bytes.Split(env, []byte{0})
	has := func(kv string) bool {
		for _, v := range vars {
			if string(v) == kv {
				return true
			}
		}
		return false
	}
	anyJob := false
	for _, v := range vars {
		if bytes.HasPrefix(v, []byte(envJobID+"=")) {
			anyJob = true
			break
		}
	}
	if !anyJob {
		return true
	}
	for _, m := range marks {
		if !has(m) {
			return false
		}
	}
	return true
}
