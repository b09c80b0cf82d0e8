package handler

import (
	"os/exec"
	"sync"
)

// Reaper finds the processes a job's command leaves behind outside its
// process group (a daemon that called setsid, a double fork) and kills
// them when the job ends. On Linux, NewReaper makes bunny a child
// subreaper (prctl PR_SET_CHILD_SUBREAPER): every orphaned descendant of a
// command is reparented to bunny rather than to init, so after a job the
// reaper can find, kill and reap them. An orphan is the ended job's if its
// environment carries that job's BUNNY_JOB_ID, BUNNY_QUEUE and
// BUNNY_ATTEMPT; one with no BUNNY_JOB_ID at all (it cleared its
// environment) belongs to no job still running and is killed too. Orphans
// of jobs still running are left alone.
//
// One Reaper serves every Exec of a process; elsewhere than Linux it does
// nothing beyond what the process group kill does.
type Reaper struct {
	mu      sync.Mutex   // held while starting a command and while sweeping
	running map[int]bool // pids of commands bunny started and has not yet waited for
	self    int
}

// start starts cmd and records its pid, so that a sweep never takes a
// command just started for an orphan.
func (r *Reaper) start(cmd *exec.Cmd) error {
	if r == nil {
		return cmd.Start()
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := cmd.Start(); err != nil {
		return err
	}
	r.running[cmd.Process.Pid] = true
	return nil
}

// waited forgets a command once it has been waited for.
func (r *Reaper) waited(pid int) {
	if r == nil {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.running, pid)
}
