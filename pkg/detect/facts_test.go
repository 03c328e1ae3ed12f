package detect

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	gojson "github.com/goccy/go-json"
	"github.com/outsider-sec/outsider/pkg/store"
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

// writeCounter is the reference store, counting the writes of each key.
type writeCounter struct {
	*store.Memory
	writes map[string]int
}

func (s *writeCounter) Swap(ctx context.Context, k string, old, v []byte, exp time.Time) (bool, error) {
	s.writes[k]++
	return s.Memory.Swap(ctx, k, old, v, exp)
}

// A busy function's own calls, one batch every ten seconds, change only the last sightings
// of its role, its function and its key: those are written when they run an hour ahead of
// the store, at a new day and at the end, not every batch; and what is written at the end
// is exact.
func TestHotFactWrites(t *testing.T) {
	ctx := context.Background()
	s := &writeCounter{Memory: store.NewMemory(), writes: map[string]int{}}
	d := newDetector(t, s, nil)
	const role, fn, key = "hot-role", "hot-fn", "ASIAHOT"
	batch := func(at time.Time) {
		t.Helper()
		r := rec(at, roleSession(role, fn, key), "GetObject", awsIP, "aws-sdk-go-v2/1.32.2 exec-env/AWS_Lambda_go1.x")
		if _, err := d.Process(ctx, r); err != nil {
			t.Fatal(err)
		}
		if _, err := d.FlushBatch(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := d.Process(ctx, lambdaIssues(day(0, 50), role, key)); err != nil {
		t.Fatal(err)
	}
	// Three hours of batches, ten seconds apart, from 00:01 on day 0.
	for at := day(0, 60); at.Before(day(0, 3*3600+60)); at = at.Add(10 * time.Second) {
		batch(at)
	}
	hot := []string{"role#" + acct + "#" + role, "fn#" + acct + "#" + role + "#" + fn, "inside#" + key}
	for _, k := range hot {
		// The first sighting, then one write an hour: 00:01, 01:01, 02:01 (and 03:01 at most).
		if got := s.writes[k]; got == 0 || got > 4 {
			t.Errorf("%s written %d times in 1,080 batches over three hours, want 1 to 4", k, got)
		}
	}
	// A new day is written at once.
	before := s.writes[hot[0]]
	batch(day(1, 30))
	if s.writes[hot[0]] != before+1 {
		t.Errorf("the first sighting of a new day was not written at once (%d writes, had %d)", s.writes[hot[0]], before)
	}
	last := day(1, 40)
	batch(last)
	if _, err := d.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	// What the store holds now answers as this detector's memory does, to the second.
	for _, k := range hot {
		b, ok, err := s.Get(ctx, k, time.Time{})
		if err != nil || !ok {
			t.Fatalf("%s: %v %v", k, ok, err)
		}
		var v factValue
		if err := json.Unmarshal(b, &v); err != nil {
			t.Fatal(err)
		}
		if got := v.newest(); got != last.Unix() {
			t.Errorf("%s: the store's last sighting after Flush is %s, want %s", k, time.Unix(got, 0).UTC(), last)
		}
	}
}

// mapFactValue is factValue as it was written when its regions were a map: the stored
// format, which must not change (items written before are read after, and conditional
// writes compare the bytes).
type mapFactValue struct {
	Days    sightings            `json:"d,omitempty"`
	Regions map[string]sightings `json:"r,omitempty"`
	IP      string               `json:"ip,omitempty"`
	First   int64                `json:"first,omitempty"`
}

// TestRegionSightingsAsMap: a fact's regions, kept as a sorted slice, are written byte for
// byte as the map was, read back from the map's bytes, and answer as the map does.
func TestRegionSightingsAsMap(t *testing.T) {
	rng := rand.New(rand.NewPCG(11, 18))
	names := []string{"", "us-east-1", "eu-west-3", "ap-southeast-2", "<script>&", "région", "us-gov-west-1"}
	for trial := range 500 {
		var m map[string]sightings
		var v factValue
		switch trial % 5 {
		case 0: // no regions at all
		case 1: // regions, none held
			m, v.Regions = map[string]sightings{}, regionSightings{}
		default:
			m = map[string]sightings{}
			for range 1 + rng.IntN(6) {
				r := names[rng.IntN(len(names))]
				var s sightings
				for range rng.IntN(4) {
					s.add(1_780_000_000 + rng.Int64N(40*daySeconds))
				}
				if rng.IntN(9) == 0 {
					s = sightings{} // read back from "[]"
				}
				m[r] = s
				v.Regions.set(r, s)
			}
		}
		old := mapFactValue{Regions: m, IP: "10.0.0.1", First: int64(trial)}
		v.IP, v.First = old.IP, old.First
		want, err := json.Marshal(old)
		if err != nil {
			t.Fatal(err)
		}
		got, err := gojson.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		wantGo, _ := gojson.Marshal(old)
		if string(got) != string(wantGo) {
			t.Fatalf("written %s; as a map %s", got, wantGo)
		}
		var back factValue
		if err := gojson.Unmarshal(want, &back); err != nil {
			t.Fatal(err)
		}
		if again, _ := gojson.Marshal(back); string(again) != string(wantGo) {
			t.Fatalf("read back from %s and written again: %s", want, again)
		}
		if !slices.IsSortedFunc(back.Regions, func(a, b regionSighting) int { return strings.Compare(a.region, b.region) }) {
			t.Fatalf("read back unsorted: %v", back.Regions)
		}
		for _, r := range names {
			ws, wok := m[r]
			gs, gok := back.Regions.get(r)
			if wok != gok || !slices.Equal(ws, gs) {
				t.Fatalf("region %q: %v, %v; the map has %v, %v", r, gs, gok, ws, wok)
			}
		}
	}
}

// TestRegionSightingsBounded: a function named in thousands of regions (a forged history)
// keeps the maxRegions seen last, sorted.
func TestRegionSightingsBounded(t *testing.T) {
	var rs regionSightings
	for i := range 3000 {
		var s sightings
		s.add(1_780_000_000 + int64(i)*60)
		rs.set(fmt.Sprintf("forged-%04d", (i*7919)%3000), s)
	}
	if len(rs) != maxRegions {
		t.Fatalf("%d regions held, want %d", len(rs), maxRegions)
	}
	if !slices.IsSortedFunc(rs, func(a, b regionSighting) int { return strings.Compare(a.region, b.region) }) {
		t.Fatal("not sorted")
	}
	for _, e := range rs {
		if e.s.newest() < 1_780_000_000+int64(3000-maxRegions)*60 {
			t.Errorf("region %s, last seen %d, kept over a later one", e.region, e.s.newest())
		}
	}
}
