package store

// overlay is what the writes waiting for a commit hold, so that Get and
// LookupKey see a record from the moment it is handed over: the queue
// keeps no copy of it. It lives under Bolt.mu.
type overlay struct {
	jobs map[string]*pendingJob
	keys map[string]*pendingKey // key(queue, idempotency key)
}

// pendingJob is the writes of one job not yet committed, merged in order.
// Its body fields are those of its first pending record: the job's own
// if that record is its enqueue, else overridden by the file's.
type pendingJob struct {
	job     Job
	deleted bool
	n       int // writes and deletes of the job waiting
}

type pendingKey struct {
	id string
	n  int
}

func (o *overlay) add(w *writeReq) {
	if o.jobs == nil {
		o.jobs = map[string]*pendingJob{}
		o.keys = map[string]*pendingKey{}
	}
	for i := range w.jobs {
		j := &w.jobs[i]
		p := o.jobs[j.ID]
		if p == nil {
			p = &pendingJob{job: *j}
			p.job.PayloadSize = len(j.Payload)
			o.jobs[j.ID] = p
		} else {
			p.job = merge(p.job, *j)
		}
		p.deleted = false
		p.n++
		if j.IdempotencyKey != "" {
			k := string(key(j.Queue, j.IdempotencyKey))
			pk := o.keys[k]
			if pk == nil {
				pk = &pendingKey{id: j.ID}
				o.keys[k] = pk
			}
			pk.n++
		}
	}
	for _, id := range w.del {
		p := o.jobs[id]
		if p == nil {
			p = &pendingJob{job: Job{ID: id}}
			o.jobs[id] = p
		}
		p.deleted = true
		p.n++
	}
}

// done forgets the writes of w, now committed.
func (o *overlay) done(w *writeReq) {
	for i := range w.jobs {
		j := &w.jobs[i]
		o.forget(j.ID)
		if j.IdempotencyKey != "" {
			k := string(key(j.Queue, j.IdempotencyKey))
			if pk := o.keys[k]; pk != nil {
				if pk.n--; pk.n <= 0 {
					delete(o.keys, k)
				}
			}
		}
	}
	for _, id := range w.del {
		o.forget(id)
	}
}

func (o *overlay) forget(id string) {
	if p := o.jobs[id]; p != nil {
		if p.n--; p.n <= 0 {
			delete(o.jobs, id)
		}
	}
}

// pendingJob is the pending writes of job id, if any.
func (s *Bolt) pendingJob(id string) (pendingJob, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if p := s.over.jobs[id]; p != nil {
		return *p, true
	}
	return pendingJob{}, false
}

// pendingKey is the job a pending write gives idempotency key k, if any.
func (s *Bolt) pendingKey(k []byte) (string, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if pk := s.over.keys[string(k)]; pk != nil {
		if p := s.over.jobs[pk.id]; p == nil || !p.deleted {
			return pk.id, true
		}
	}
	return "", false
}
