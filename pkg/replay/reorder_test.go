package replay

import (
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
			o.push(r)
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
