package replay

import (
	"container/heap"
	"time"

	"github.com/outsider-sec/outsider/pkg/cloudtrail"
)

// reorder puts records back in eventTime order within an event-time window: a record is
// released once a record more than the window newer has been read. CloudTrail log files
// are only roughly ordered (a file holds a few minutes of one account and region, and its
// records precede its name's time), and the detector learns from order: an AssumeRole
// must come before the calls made with its key. A record older than what was already
// released (input going back in time by more than the window) is released at once: the
// detector decides it as of its own time all the same. Ties keep their input order.
//
// A heap: pushing and popping never move what it holds.
type reorder struct {
	window    int64 // nanoseconds
	h         recordHeap
	seq       uint64
	watermark int64 // newest eventTime read
}

func newReorder(window time.Duration) *reorder { return &reorder{window: int64(window)} }

type entry struct {
	t   int64 // eventTime, Unix nanoseconds
	seq uint64
	r   *cloudtrail.Record
}

type recordHeap []entry

func (h recordHeap) Len() int { return len(h) }
func (h recordHeap) Less(i, j int) bool {
	return h[i].t < h[j].t || h[i].t == h[j].t && h[i].seq < h[j].seq
}
func (h recordHeap) Swap(i, j int) { h[i], h[j] = h[j], h[i] }
func (h *recordHeap) Push(x any)   { *h = append(*h, x.(entry)) }
func (h *recordHeap) Pop() any {
	old := *h
	e := old[len(old)-1]
	old[len(old)-1] = entry{}
	*h = old[:len(old)-1]
	return e
}

// push adds r; ready then reports the records to release.
func (o *reorder) push(r *cloudtrail.Record) {
	t := r.Time.UnixNano()
	o.seq++
	heap.Push(&o.h, entry{t, o.seq, r})
	o.watermark = max(o.watermark, t)
}

// ready returns the oldest record when it is older than the window allows to hold.
func (o *reorder) ready() (*cloudtrail.Record, bool) {
	if len(o.h) == 0 || o.h[0].t > o.watermark-o.window {
		return nil, false
	}
	return heap.Pop(&o.h).(entry).r, true
}

// pop returns the oldest record held, whatever the window.
func (o *reorder) pop() (*cloudtrail.Record, bool) {
	if len(o.h) == 0 {
		return nil, false
	}
	return heap.Pop(&o.h).(entry).r, true
}

// held is the number of records held.
func (o *reorder) held() int { return len(o.h) }
