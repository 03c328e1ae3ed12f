package flow

import (
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/outsider-sec/outsider/pkg/cloudtrail"
)

// TestOrderAsOneSort: order ranks only the records that share their time, and sorts as
// one stable sort by time and rank (the slow, obvious reference) does, on batches in
// order, nearly in order and shuffled, with many records at one second.
func TestOrderAsOneSort(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 141))
	base := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	for trial := range 400 {
		n := rng.IntN(200)
		ranks := map[*cloudtrail.Record]int{}
		var items []item
		for i := range n {
			r := &cloudtrail.Record{Time: base.Add(time.Duration(i/(1+trial%5)+rng.IntN(2)) * time.Second)}
			ranks[r] = rng.IntN(2)
			items = append(items, item{r: r})
		}
		switch trial % 3 {
		case 1:
			rng.Shuffle(len(items), func(i, j int) { items[i], items[j] = items[j], items[i] })
		case 2:
			for range 3 {
				if n > 1 {
					i, j := rng.IntN(n), rng.IntN(n)
					items[i], items[j] = items[j], items[i]
				}
			}
		}
		want := slices.Clone(items)
		for i := range want {
			want[i].rank = ranks[want[i].r]
		}
		slices.SortStableFunc(want, func(a, b item) int {
			if c := a.r.Time.Compare(b.r.Time); c != 0 {
				return c
			}
			return a.rank - b.rank
		})
		calls := 0
		order(items, func(r *cloudtrail.Record) int { calls++; return ranks[r] })
		for i := range items {
			if items[i].r != want[i].r {
				t.Fatalf("trial %d: record %d is %v, the one sort has %v", trial, i, items[i].r.Time, want[i].r.Time)
			}
		}
		alone := 0
		for i := range want {
			if (i == 0 || !want[i-1].r.Time.Equal(want[i].r.Time)) && (i == len(want)-1 || !want[i+1].r.Time.Equal(want[i].r.Time)) {
				alone++
			}
		}
		if calls != n-alone {
			t.Fatalf("trial %d: %d records ranked, want the %d that share their time", trial, calls, n-alone)
		}
	}
}
