package store

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/tunnel-dev/tunnel/internal/dirsync"
)

// The journal is where a group commit becomes durable: each commit is one
// frame appended to the current segment file and fsync'd once, with no
// B+tree pages to write. The records reach the bbolt file later, many
// commits in one transaction (apply.go), and a segment is removed once
// the file holds all of it. At open, the segments the file does not hold
// yet are replayed into it.
//
// A frame is its length (4 bytes), the CRC-32C of its body (4 bytes), and
// the body: a count, then each record. A record is a kind byte ('W' a
// write, 'D' a delete), the job id, and for a write the job's meta and
// body records (codec.go). A frame is written whole or, after a crash
// during its write, cut short at the end of the last segment, where it
// was never acknowledged; recovery stops there.
//
// Each commit writes its frame followed by an end mark, eight zero bytes
// (a frame of length 0, which no commit writes), that the next commit
// overwrites. A segment ends at its end mark or at the end of its file.
// So an applied segment need not be deleted: it becomes the spare, and
// the next segment reuses its file, whose blocks are already allocated
// and written. A commit then overwrites blocks in place, and its
// fdatasync has no file size or extents to write: on ext4 that halved
// the cost of a sync (0.31 → 0.14 ms, and 0.15 → 0.07 ms of CPU). The
// stale frames after the end mark are never read.

const (
	frameHeader = 8
	// maxFrame bounds one frame: a group commit takes at most
	// maxBatchBytes, and one Write larger than this is refused.
	maxFrame = 1 << 30

	recWrite  = 'W'
	recDelete = 'D'
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// errTorn is a frame cut short, or one whose checksum does not match.
var errTorn = errors.New("frame cut short or damaged")

// errEnd is the end mark: the segment's frames end here.
var errEnd = errors.New("end of the journal segment")

// endMark follows each commit's frame.
var endMark [frameHeader]byte

// appendFrame appends the frame of the writes of batch to b.
func appendFrame(b []byte, batch []writeReq) []byte {
	start := len(b)
	b = append(b, make([]byte, frameHeader)...)
	n := 0
	for i := range batch {
		n += len(batch[i].jobs) + len(batch[i].del)
	}
	b = binary.AppendUvarint(b, uint64(n))
	for i := range batch {
		for j := range batch[i].jobs {
			job := &batch[i].jobs[j]
			b = append(b, recWrite)
			b = appendBytes(b, []byte(job.ID))
			b = appendBytes(b, encodeMeta(job))
			b = appendBytes(b, encodeBody(job))
		}
		for _, id := range batch[i].del {
			b = append(b, recDelete)
			b = appendBytes(b, []byte(id))
		}
	}
	body := b[start+frameHeader:]
	binary.LittleEndian.PutUint32(b[start:], uint32(len(body)))
	binary.LittleEndian.PutUint32(b[start+4:], crc32.Checksum(body, castagnoli))
	return b
}

// readFrame takes the first frame off b and returns its writes (in
// order, each a writeReq of one record) and the rest of b.
func readFrame(b []byte) ([]writeReq, []byte, error) {
	if len(b) < frameHeader {
		return nil, b, errTorn
	}
	n := binary.LittleEndian.Uint32(b)
	if n == 0 && binary.LittleEndian.Uint32(b[4:]) == 0 {
		return nil, b, errEnd
	}
	if n > maxFrame || uint64(n) > uint64(len(b)-frameHeader) {
		return nil, b, errTorn
	}
	body := b[frameHeader : frameHeader+int(n)]
	if crc32.Checksum(body, castagnoli) != binary.LittleEndian.Uint32(b[4:]) {
		return nil, b, errTorn
	}
	recs, err := decodeFrame(body)
	if err != nil {
		// The checksum matched, so this is no torn write: the frame was
		// written wrong, and what follows cannot be trusted either.
		return nil, b, fmt.Errorf("decoding a journal frame: %w", err)
	}
	return recs, b[frameHeader+int(n):], nil
}

// decodeFrame reads the records of a frame's body.
func decodeFrame(body []byte) ([]writeReq, error) {
	r := reader{b: body}
	n := r.uvarint()
	if r.err != nil {
		return nil, r.err
	}
	if n > uint64(len(body)) { // every record takes at least two bytes
		return nil, fmt.Errorf("frame claims %d records in %d bytes", n, len(body))
	}
	recs := make([]writeReq, 0, n)
	for range n {
		switch kind := r.byte(); kind {
		case recWrite:
			j := Job{ID: r.string()}
			meta, body := r.bytes(), r.bytes()
			if r.err != nil {
				return nil, r.err
			}
			if err := decodeMeta(&j, meta, true); err != nil {
				return nil, fmt.Errorf("record of job %s: %w", j.ID, err)
			}
			if err := decodeBody(&j, body); err != nil {
				return nil, fmt.Errorf("record of job %s: %w", j.ID, err)
			}
			if err := validRecord(&j); err != nil {
				return nil, err
			}
			recs = append(recs, writeReq{jobs: []Job{j}})
		case recDelete:
			id := r.string()
			if r.err != nil {
				return nil, r.err
			}
			recs = append(recs, writeReq{del: []string{id}})
		default:
			if r.err != nil {
				return nil, r.err
			}
			return nil, fmt.Errorf("unknown record kind %#x", kind)
		}
	}
	if len(r.b) != 0 {
		return nil, fmt.Errorf("%d bytes after the frame's last record", len(r.b))
	}
	return recs, nil
}

// validRecord is the check every record passes before the store takes it.
func validRecord(j *Job) error {
	if j.ID == "" || j.Queue == "" || !j.State.Valid() {
		return fmt.Errorf("invalid record (id %q, queue %q, state %q)", j.ID, j.Queue, j.State)
	}
	return nil
}

// journal is the segment being appended to. Only the committer uses it.
type journal struct {
	base string // the database's path; segments are base.journal.N
	seg  uint64
	f    *os.File
	off  int64  // where the next frame goes: the end mark's offset
	buf  []byte // the frame being written, reused
}

func segmentPath(base string, seg uint64) string {
	return fmt.Sprintf("%s.journal.%09d", base, seg)
}

// sparePath is the applied segment kept for the next segment to reuse.
func sparePath(base string) string { return base + ".journal.spare" }

// segments lists the journal segments beside base, in order.
func segments(base string) ([]uint64, error) {
	dir, prefix := filepath.Dir(base), filepath.Base(base)+".journal."
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("listing the journal in %s: %w", dir, err)
	}
	var segs []uint64
	for _, e := range ents {
		name, ok := strings.CutPrefix(e.Name(), prefix)
		if !ok || e.IsDir() {
			continue
		}
		if n, err := strconv.ParseUint(name, 10, 64); err == nil {
			segs = append(segs, n)
		}
	}
	slices.Sort(segs)
	return segs, nil
}

// readSegment returns the frames of one segment. With last set, a frame
// cut short ends it (a crash during that write, never acknowledged);
// anywhere else it is an error, since a later segment was only begun
// after this one's last frame was durable.
func readSegment(base string, seg uint64, last bool) ([][]writeReq, error) {
	path := segmentPath(base, seg)
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading journal segment %s: %w", path, err)
	}
	var frames [][]writeReq
	for off := 0; len(data) > 0; {
		recs, rest, err := readFrame(data)
		switch {
		case errors.Is(err, errEnd):
			return frames, nil
		case errors.Is(err, errTorn) && last:
			return frames, nil
		case errors.Is(err, errTorn):
			return nil, fmt.Errorf("journal segment %s is damaged at offset %d, before later segments: restore the volume from a backup", path, off)
		case err != nil:
			return nil, fmt.Errorf("journal segment %s at offset %d: %w", path, off, err)
		}
		frames = append(frames, recs)
		off += len(data) - len(rest)
		data = rest
	}
	return frames, nil
}

// createSegment starts segment seg, in the spare's file if there is one,
// with an end mark at its start, and makes its name durable. The spare
// is marked before it is renamed: under its new name it must never show
// the stale frames of the segment it was. The caller keeps the spare's
// name still meanwhile (Bolt.spareMu).
func createSegment(base string, seg uint64) (*journal, error) {
	path, spare := segmentPath(base, seg), sparePath(base)
	from := spare
	f, err := os.OpenFile(spare, os.O_WRONLY, 0)
	if errors.Is(err, os.ErrNotExist) {
		from = path
		f, err = os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	}
	if err != nil {
		return nil, fmt.Errorf("creating journal segment %s: %w", path, err)
	}
	fail := func(err error) (*journal, error) {
		_ = f.Close()
		_ = os.Remove(from)
		return nil, err
	}
	if _, err := f.WriteAt(endMark[:], 0); err != nil {
		return fail(fmt.Errorf("starting journal segment %s: %w", path, err))
	}
	if err := datasync(f); err != nil {
		return fail(fmt.Errorf("syncing journal segment %s: %w", path, err))
	}
	if from == spare {
		if err := os.Rename(spare, path); err != nil {
			return fail(fmt.Errorf("reusing the spare journal segment: %w", err))
		}
		from = path
	}
	if err := dirsync.Sync(filepath.Dir(base)); err != nil {
		return fail(err)
	}
	return &journal{base: base, seg: seg, f: f}, nil
}

// commit appends the frame of batch and makes it durable, and returns
// the frame's size.
func (j *journal) commit(batch []writeReq) (int, error) {
	j.buf = appendFrame(j.buf[:0], batch)
	n := len(j.buf)
	j.buf = append(j.buf, endMark[:]...)
	if _, err := j.f.WriteAt(j.buf, j.off); err != nil {
		return n, fmt.Errorf("appending to journal segment %s: %w", j.f.Name(), err)
	}
	if err := datasync(j.f); err != nil {
		return n, fmt.Errorf("syncing journal segment %s: %w", j.f.Name(), err)
	}
	j.off += int64(n)
	if cap(j.buf) > 1<<20 {
		j.buf = nil // one large commit does not pin its buffer
	}
	return n, nil
}

// next closes this segment and starts the one after it.
func (j *journal) next() (*journal, error) {
	n, err := createSegment(j.base, j.seg+1)
	if err != nil {
		return nil, err
	}
	_ = j.f.Close()
	return n, nil
}

func (j *journal) close() error {
	if err := j.f.Close(); err != nil {
		return fmt.Errorf("closing journal segment: %w", err)
	}
	return nil
}

// removeSegments deletes the segments up to and including through, which
// the file now holds; with keep, the last of them becomes the spare
// instead, and without it the spare goes too.
func removeSegments(base string, through uint64, keep bool) error {
	segs, err := segments(base)
	if err != nil {
		return err
	}
	for i, s := range segs {
		if s > through {
			break
		}
		path := segmentPath(base, s)
		if keep && (i == len(segs)-1 || segs[i+1] > through) {
			if err := os.Rename(path, sparePath(base)); err != nil && !errors.Is(err, os.ErrNotExist) {
				return fmt.Errorf("keeping an applied journal segment as the spare: %w", err)
			}
			continue
		}
		if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("removing applied journal segment: %w", err)
		}
	}
	if !keep {
		if err := os.Remove(sparePath(base)); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("removing the spare journal segment: %w", err)
		}
	}
	return nil
}
