package detect

import (
	"math/rand/v2"
	"slices"
	"testing"
)

// TestSightingsExact: a fact kept as each day's first and last sighting answers "seen in
// [t − training, t]?" exactly as the list of every sighting would (the slow, obvious
// reference), for any query time, whatever order the sightings were added in and however
// they were split between workers and merged — for training periods of a day or more.
func TestSightingsExact(t *testing.T) {
	rng := rand.New(rand.NewPCG(42, 42))
	for trial := range 300 {
		training := int64(daySeconds) * int64(1+rng.IntN(40))
		if trial%7 == 0 {
			training = daySeconds + int64(rng.IntN(daySeconds)) // odd lengths, to the second
		}
		var all []int64
		n := 1 + rng.IntN(60)
		base := int64(1_780_000_000)
		for range n {
			all = append(all, base+rng.Int64N(90*daySeconds))
		}
		// Two workers see parts of it, in any order, and merge through the store.
		var a, b sightings
		for _, s := range all {
			if rng.IntN(2) == 0 {
				a.add(s)
			} else {
				b.add(s)
			}
		}
		a.merge(b)
		for range 400 {
			q := base - 5*daySeconds + rng.Int64N(130*daySeconds)
			if rng.IntN(3) == 0 {
				// At the edges: exactly a sighting, and exactly training after one.
				s := all[rng.IntN(len(all))]
				q = []int64{s, s + training, s + training + 1, s - 1}[rng.IntN(4)]
			}
			want := slices.ContainsFunc(all, func(s int64) bool { return s <= q && s >= q-training })
			if got := a.seen(q, training); got != want {
				t.Fatalf("trial %d: seen(%d) with training %d = %v, the reference says %v", trial, q, training, got, want)
			}
		}
	}
}

// TestStoredFactStaysSmall: a role seen every day for more than a year is written as its
// last two training periods of days, not all of them, and still answers exactly as the
// whole history would for every time from a training period before its newest sighting.
func TestStoredFactStaysSmall(t *testing.T) {
	training := int64(30 * daySeconds)
	var v factValue
	base := int64(1_750_000_000)
	for d := range int64(420) {
		v.Days.add(base + d*daySeconds + 3600)
		v.Days.add(base + d*daySeconds + 80000)
	}
	st := v.stored(training)
	if len(st.Days) > 62 {
		t.Errorf("%d days written, want at most 62", len(st.Days))
	}
	newest := v.newest()
	for q := newest - training; q < newest+training+2*daySeconds; q += 997 {
		if st.Days.seen(q, training) != v.Days.seen(q, training) {
			t.Fatalf("at %d the written fact says %v, the whole history %v", q, st.Days.seen(q, training), v.Days.seen(q, training))
		}
	}
}
