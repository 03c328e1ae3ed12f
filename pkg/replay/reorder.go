package replay

import (
	"time"

	"github.com/outsider-sec/outsider/pkg/cloudtrail"
)

// reorder puts records back in eventTime order within an event-time window: a record is
// released once a record more than the window newer has been read. CloudTrail log files
// are only roughly ordered (a file holds a few minutes of one account and region, and its
// records precede its name's time), and the detector learns from order: an AssumeRole
// must come before the calls made with its key. A record older than what was already
// released (input going back in time by more than the window) is released at once: the
// detector decides it as of its own time all the same. Ties keep their input order: the
// order of the inputs (their sources), then their order within one: the same however the
// inputs' reading interleaved, on one core or many.
//
// Records that come in order (most of them: a file is in order, and so is NDJSON) wait in
// a queue; the others in a heap. What comes out is the oldest of the two heads, so the
// order is the same as one heap's, at the cost of a queue's.
type reorder struct {
	window    int64 // nanoseconds
	h         recordHeap
	q         []entry // in (time, seq) order; q[head:] are held
	head      int
	seqs      []uint64 // records pushed from each source
	watermark int64    // newest eventTime read
	released  int64    // the eventTime of the last record released
	late      int      // records pushed behind what was already released: decided out of order
}

// srcShift places a record's source above its rank within the source in entry.seq: 2^24
// sources, 2^40 records each.
const (
	srcShift = 40
	maxSrc   = 1<<(64-srcShift) - 1
)

func newReorder(window time.Duration) *reorder { return &reorder{window: int64(window)} }

type entry struct {
	t   int64  // eventTime, Unix nanoseconds
	seq uint64 // the source, then the rank within it (srcShift)
	r   *cloudtrail.Record
}

type recordHeap []entry

// push and pop are container/heap's, without its interface calls: the merge of a file
// per account pushes most records through the heap (3% of a one-core run went to
// heap.Pop's calls of Less and Swap). The tests hold them to container/heap (the
// heap.Interface methods are the tests').
func (h *recordHeap) push(e entry) {
	*h = append(*h, e)
	q := *h
	for j := len(q) - 1; j > 0; {
		i := (j - 1) / 2
		if !q[j].less(q[i]) {
			break
		}
		q[i], q[j] = q[j], q[i]
		j = i
	}
}

func (h *recordHeap) pop() entry {
	q := *h
	n := len(q) - 1
	top := q[0]
	q[0] = q[n]
	q[n] = entry{}
	q = q[:n]
	*h = q
	for i := 0; ; {
		l := 2*i + 1
		if l >= n {
			break
		}
		j := l
		if r := l + 1; r < n && q[r].less(q[l]) {
			j = r
		}
		if !q[j].less(q[i]) {
			break
		}
		q[i], q[j] = q[j], q[i]
		i = j
	}
	return top
}

// push adds r, read from the source src (an input's place among them); ready then reports
// the records to release.
func (o *reorder) push(r *cloudtrail.Record, src int) {
	t := r.Time.UnixNano()
	src = min(src, maxSrc)
	for len(o.seqs) <= src {
		o.seqs = append(o.seqs, 0)
	}
	o.seqs[src]++
	if t < o.released {
		o.late++
	}
	e := entry{t, uint64(src)<<srcShift | o.seqs[src], r}
	if o.head == len(o.q) || !e.less(o.q[len(o.q)-1]) {
		o.q = append(o.q, e)
	} else {
		o.h.push(e)
	}
	o.watermark = max(o.watermark, t)
}

// oldest is where the oldest record held is: the queue (true) or the heap.
func (o *reorder) oldest() (e entry, inQueue, ok bool) {
	switch {
	case o.head < len(o.q) && (len(o.h) == 0 || o.q[o.head].less(o.h[0])):
		return o.q[o.head], true, true
	case len(o.h) > 0:
		return o.h[0], false, true
	}
	return entry{}, false, false
}

func (a entry) less(b entry) bool { return a.t < b.t || a.t == b.t && a.seq < b.seq }

func (o *reorder) take(inQueue bool) *cloudtrail.Record {
	if !inQueue {
		e := o.h.pop()
		o.released = max(o.released, e.t)
		return e.r
	}
	r := o.q[o.head].r
	o.released = max(o.released, o.q[o.head].t)
	o.q[o.head] = entry{}
	o.head++
	if o.head == len(o.q) {
		o.q, o.head = o.q[:0], 0
	} else if o.head >= 4096 && o.head*2 >= len(o.q) {
		n := copy(o.q, o.q[o.head:])
		clear(o.q[n:])
		o.q, o.head = o.q[:n], 0
	}
	return r
}

// ready returns the oldest record when it is older than the window allows to hold.
func (o *reorder) ready() (*cloudtrail.Record, bool) {
	e, inQueue, ok := o.oldest()
	if !ok || e.t > o.watermark-o.window {
		return nil, false
	}
	return o.take(inQueue), true
}

// readyBelow returns the oldest record held when it is older than limit by the window:
// limit is the time every stream still open has read up to (the merge's watermark).
func (o *reorder) readyBelow(limit int64) (*cloudtrail.Record, bool) {
	e, inQueue, ok := o.oldest()
	if !ok || e.t > limit-o.window {
		return nil, false
	}
	return o.take(inQueue), true
}

// pop returns the oldest record held, whatever the window.
func (o *reorder) pop() (*cloudtrail.Record, bool) {
	_, inQueue, ok := o.oldest()
	if !ok {
		return nil, false
	}
	return o.take(inQueue), true
}

// held is the number of records held.
func (o *reorder) held() int { return len(o.h) + len(o.q) - o.head }
