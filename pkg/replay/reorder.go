package replay

import (
	"sort"

	"github.com/outsider-sec/outsider/pkg/cloudtrail"
)

// reorder puts records back in eventTime order within a bounded window. CloudTrail log
// files are only roughly ordered (a file holds about five minutes of one region, and
// regions interleave), and the detector learns from order: an AssumeRole must come before
// the calls made with its key. Ties keep their input order.
//
// The window is a sorted slice: a record in order (the usual case) is appended in O(1),
// one out of order is inserted after a binary search.
type reorder struct {
	buf  []entry // buf[head:] is sorted by time, then arrival
	head int
	size int
}

type entry struct {
	t int64 // eventTime, Unix nanoseconds
	r *cloudtrail.Record
}

// push adds r and returns the oldest record when the window is full.
func (o *reorder) push(r *cloudtrail.Record) (*cloudtrail.Record, bool) {
	e := entry{r.Time.UnixNano(), r}
	live := o.buf[o.head:]
	if n := len(live); n == 0 || live[n-1].t <= e.t {
		o.buf = append(o.buf, e)
	} else {
		// After every record of the same time: ties keep their input order.
		i := o.head + sort.Search(n, func(i int) bool { return live[i].t > e.t })
		o.buf = append(o.buf, entry{})
		copy(o.buf[i+1:], o.buf[i:])
		o.buf[i] = e
	}
	if len(o.buf)-o.head <= o.size {
		return nil, false
	}
	return o.pop()
}

// pop returns the oldest record held.
func (o *reorder) pop() (*cloudtrail.Record, bool) {
	if o.head == len(o.buf) {
		o.buf, o.head = o.buf[:0], 0
		return nil, false
	}
	r := o.buf[o.head].r
	o.buf[o.head] = entry{}
	o.head++
	if o.head >= 4096 && o.head*2 >= len(o.buf) {
		n := copy(o.buf, o.buf[o.head:])
		clear(o.buf[n:])
		o.buf, o.head = o.buf[:n], 0
	}
	return r, true
}
