package replay

import (
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/outsider-sec/outsider/pkg/cloudtrail"
)

// TestReorder: any input whose disorder fits in the window comes out sorted by time, ties
// in input order, and nothing is lost.
func TestReorder(t *testing.T) {
	rng := rand.New(rand.NewPCG(42, 42))
	base := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	for _, window := range []int{1, 8, 100} {
		var in []*cloudtrail.Record
		for i := 0; i < 5000; i++ {
			// Jitter smaller than the window's reach; many equal times.
			at := base.Add(time.Duration(i/3+rng.IntN(window))*time.Second - time.Duration(window/2)*time.Second)
			in = append(in, &cloudtrail.Record{Time: at, EventID: string(rune(i))})
		}
		want := slices.Clone(in)
		slices.SortStableFunc(want, func(a, b *cloudtrail.Record) int { return a.Time.Compare(b.Time) })
		o := &reorder{size: window * 3}
		var got []*cloudtrail.Record
		for _, r := range in {
			if out, ok := o.push(r); ok {
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
			t.Fatalf("window %d: %d out, %d in", window, len(got), len(want))
		}
		for i := range got {
			if got[i] != want[i] {
				t.Fatalf("window %d: position %d: got %v, want %v", window, i, got[i].Time, want[i].Time)
			}
		}
	}
}
