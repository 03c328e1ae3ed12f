package replay

import (
	"container/heap"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/outsider-sec/outsider/pkg/cloudtrail"
)

// TestReorder: any input whose disorder fits in the event-time window comes out sorted by
// time, ties in input order, and nothing is lost; what held at once stays bounded by the
// window, not by the input.
func TestReorder(t *testing.T) {
	rng := rand.New(rand.NewPCG(42, 42))
	base := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	for _, jitter := range []int{1, 8, 100} {
		window := time.Duration(jitter) * time.Second
		var in []*cloudtrail.Record
		for i := 0; i < 5000; i++ {
			// Jitter within the window; many equal times.
			at := base.Add(time.Duration(i/3+rng.IntN(jitter)) * time.Second)
			in = append(in, &cloudtrail.Record{Time: at, EventID: string(rune(i))})
		}
		want := slices.Clone(in)
		slices.SortStableFunc(want, func(a, b *cloudtrail.Record) int { return a.Time.Compare(b.Time) })
		o := newReorder(window)
		var got []*cloudtrail.Record
		most := 0
		for _, r := range in {
			o.push(r, 0)
			most = max(most, o.held())
			for {
				out, ok := o.ready()
				if !ok {
					break
				}
				got = append(got, out)
			}
		}
		for {
			r, ok := o.pop()
			if !ok {
				break
			}
			got = append(got, r)
		}
		if len(got) != len(want) {
			t.Fatalf("window %s: %d out, %d in", window, len(got), len(want))
		}
		for i := range got {
			if got[i] != want[i] {
				t.Fatalf("window %s: position %d: got %v, want %v", window, i, got[i].Time, want[i].Time)
			}
		}
		// Three records a second, and the window's worth of jitter on both sides.
		if limit := 3*(2*jitter+2) + 3; most > limit {
			t.Errorf("window %s: held %d records at once, more than %d", window, most, limit)
		}
	}
}

// TestReorderSameAsOneHeap: the queue beside the heap changes nothing: on inputs that go
// back in time by more than the window (file and region boundaries, backfills), what
// comes out, and when, is what one heap of every record gives.
func TestReorderSameAsOneHeap(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 7))
	base := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	for round := 0; round < 50; round++ {
		window := time.Duration(rng.IntN(600)) * time.Second
		o, ref := newReorder(window), &oneHeap{window: int64(window)}
		at := base
		for i := 0; i < 3000; i++ {
			switch rng.IntN(20) {
			case 0:
				at = at.Add(-time.Duration(rng.IntN(7200)) * time.Second) // back, past the window
			case 1:
				at = at.Add(-time.Duration(rng.IntN(60)) * time.Second)
			default:
				at = at.Add(time.Duration(rng.IntN(3)) * time.Second)
			}
			r := &cloudtrail.Record{Time: at}
			src := rng.IntN(3)
			o.push(r, src)
			ref.push(r, src)
			for {
				got, ok1 := o.ready()
				want, ok2 := ref.ready()
				if ok1 != ok2 || got != want {
					t.Fatalf("round %d, record %d: ready gave %v, %v; one heap %v, %v", round, i, got, ok1, want, ok2)
				}
				if !ok1 {
					break
				}
			}
		}
		for {
			got, ok1 := o.pop()
			want, ok2 := ref.pop()
			if ok1 != ok2 || got != want {
				t.Fatalf("round %d, drain: %v, %v; one heap %v, %v", round, got, ok1, want, ok2)
			}
			if !ok1 {
				break
			}
		}
	}
}

// TestReorderTiesBySource: records of the same time from several inputs come out in the
// inputs' order, then each input's, however their reading interleaved (one core reading
// them in turn, or readers side by side handing on what they read).
func TestReorderTiesBySource(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 3))
	base := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	srcs := make([][]*cloudtrail.Record, 5)
	for s := range srcs {
		for i := 0; i < 200; i++ {
			at := base.Add(time.Duration(i/4+rng.IntN(2)) * time.Second) // many ties, within and across
			srcs[s] = append(srcs[s], &cloudtrail.Record{Time: at})
		}
	}
	var first []*cloudtrail.Record
	for round := 0; round < 20; round++ {
		o := newReorder(time.Minute)
		next := make([]int, len(srcs))
		for left := 5 * 200; left > 0; left-- {
			s := rng.IntN(len(srcs))
			for next[s] == len(srcs[s]) {
				s = (s + 1) % len(srcs)
			}
			o.push(srcs[s][next[s]], s)
			next[s]++
		}
		var got []*cloudtrail.Record
		for {
			r, ok := o.pop()
			if !ok {
				break
			}
			got = append(got, r)
		}
		if round == 0 {
			first = got
			for i := 1; i < len(got); i++ {
				if got[i].Time.Before(got[i-1].Time) {
					t.Fatalf("out of order at %d", i)
				}
			}
			continue
		}
		if !slices.Equal(got, first) {
			t.Fatalf("interleaving %d gave another order than the first", round)
		}
	}
}

// recordHeap as a heap.Interface, for container/heap in the reference.
func (h recordHeap) Len() int           { return len(h) }
func (h recordHeap) Less(i, j int) bool { return h[i].less(h[j]) }
func (h recordHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *recordHeap) Push(x any)        { *h = append(*h, x.(entry)) }
func (h *recordHeap) Pop() any {
	old := *h
	e := old[len(old)-1]
	old[len(old)-1] = entry{}
	*h = old[:len(old)-1]
	return e
}

// oneHeap is the reorder window as one heap: the slow, obvious reference.
type oneHeap struct {
	window    int64
	h         recordHeap
	seqs      map[int]uint64
	watermark int64
}

func (o *oneHeap) push(r *cloudtrail.Record, src int) {
	t := r.Time.UnixNano()
	if o.seqs == nil {
		o.seqs = map[int]uint64{}
	}
	o.seqs[src]++
	heap.Push(&o.h, entry{t, uint64(src)<<srcShift | o.seqs[src], r})
	o.watermark = max(o.watermark, t)
}

func (o *oneHeap) ready() (*cloudtrail.Record, bool) {
	if len(o.h) == 0 || o.h[0].t > o.watermark-o.window {
		return nil, false
	}
	return heap.Pop(&o.h).(entry).r, true
}

func (o *oneHeap) pop() (*cloudtrail.Record, bool) {
	if len(o.h) == 0 {
		return nil, false
	}
	return heap.Pop(&o.h).(entry).r, true
}
