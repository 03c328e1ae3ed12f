package replay

import (
	"container/heap"

	"github.com/outsider-sec/outsider/pkg/cloudtrail"
)

// reorder puts records back in eventTime order within a bounded window. CloudTrail log
// files are only roughly ordered (a file holds about five minutes of one region, and
// regions interleave), and the detector learns from order: an AssumeRole must come before
// the calls made with its key. Ties keep their input order.
type reorder struct {
	h    recHeap
	seq  uint64
	size int
}

type seqRec struct {
	r   *cloudtrail.Record
	seq uint64
}

type recHeap []seqRec

func (h recHeap) Len() int { return len(h) }
func (h recHeap) Less(i, j int) bool {
	if c := h[i].r.Time.Compare(h[j].r.Time); c != 0 {
		return c < 0
	}
	return h[i].seq < h[j].seq
}
func (h recHeap) Swap(i, j int) { h[i], h[j] = h[j], h[i] }
func (h *recHeap) Push(x any)   { *h = append(*h, x.(seqRec)) }
func (h *recHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}

// push adds r and returns the oldest record when the window is full.
func (o *reorder) push(r *cloudtrail.Record) (*cloudtrail.Record, bool) {
	o.seq++
	heap.Push(&o.h, seqRec{r, o.seq})
	if o.h.Len() <= o.size {
		return nil, false
	}
	return heap.Pop(&o.h).(seqRec).r, true
}

// pop drains the window, oldest first.
func (o *reorder) pop() (*cloudtrail.Record, bool) {
	if o.h.Len() == 0 {
		return nil, false
	}
	return heap.Pop(&o.h).(seqRec).r, true
}
