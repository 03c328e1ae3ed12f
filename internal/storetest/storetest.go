// Package storetest holds what every detect.Store implementation is tested with: the
// Store contract, and the reference-model replay of seeded random histories whose findings
// must equal the in-memory store's.
package storetest

import (
	"bytes"
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/outsider-sec/outsider/internal/gen"
	"github.com/outsider-sec/outsider/pkg/cloudtrail"
	"github.com/outsider-sec/outsider/pkg/detect"
	"github.com/outsider-sec/outsider/pkg/flow"
	"github.com/outsider-sec/outsider/pkg/ipranges"
)

var ctx = context.Background()

// Epoch is the time the contract's items are written at.
var Epoch = time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)

// Contract runs the Store contract against any implementation.
func Contract(t *testing.T, s detect.Store) {
	// Writes are flushed before they are read back, so that gathering stores are read from
	// their database.
	flush := func() {
		if err := s.Flush(ctx); err != nil {
			t.Fatal(err)
		}
	}
	t0 := Epoch
	if _, ok, err := s.Get(ctx, "absent", t0); ok || err != nil {
		t.Fatalf("Get(absent) = %v, %v", ok, err)
	}
	if err := s.Put(ctx, "k", []byte("v1"), t0.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	flush()
	if v, ok, err := s.Get(ctx, "k", t0); !ok || err != nil || string(v) != "v1" {
		t.Fatalf("Get(k) = %q, %v, %v", v, ok, err)
	}
	// Expired items are invisible, whatever the database still holds.
	if _, ok, _ := s.Get(ctx, "k", t0.Add(time.Hour)); ok {
		t.Error("expired item visible at its expiry")
	}
	if err := s.Put(ctx, "forever", []byte("f"), time.Time{}); err != nil {
		t.Fatal(err)
	}
	flush()
	if _, ok, _ := s.Get(ctx, "forever", t0.Add(100*365*24*time.Hour)); !ok {
		t.Error("item without expiry expired")
	}
	// Claims: once while live, again once expired.
	if won, err := s.Claim(ctx, "c", []byte("a"), t0, t0.Add(time.Hour)); !won || err != nil {
		t.Fatalf("first claim = %v, %v", won, err)
	}
	if won, _ := s.Claim(ctx, "c", []byte("b"), t0.Add(time.Minute), t0.Add(2*time.Hour)); won {
		t.Error("second claim of a live key won")
	}
	if v, _, _ := s.Get(ctx, "c", t0); string(v) != "a" {
		t.Errorf("losing claim overwrote: %q", v)
	}
	if won, _ := s.Claim(ctx, "c", []byte("c"), t0.Add(time.Hour), t0.Add(3*time.Hour)); !won {
		t.Error("claim of an expired key lost")
	}
	// Concurrent claims: exactly one wins.
	var wg sync.WaitGroup
	wins := make(chan bool, 16)
	for i := 0; i < 16; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			won, err := s.Claim(ctx, "race", []byte(fmt.Sprint(i)), t0, t0.Add(time.Hour))
			if err != nil {
				t.Error(err)
			}
			wins <- won
		}(i)
	}
	wg.Wait()
	close(wins)
	n := 0
	for w := range wins {
		if w {
			n++
		}
	}
	if n != 1 {
		t.Errorf("%d concurrent claims won, want 1", n)
	}
	// Swaps: conditional on the value held (nil: absent); exactly one of concurrent
	// swaps from the same value wins.
	if ok, err := s.Swap(ctx, "s", nil, []byte("1"), t0.Add(time.Hour)); !ok || err != nil {
		t.Fatalf("swap of an absent key = %v, %v", ok, err)
	}
	flush()
	if ok, _ := s.Swap(ctx, "s", nil, []byte("x"), t0.Add(time.Hour)); ok {
		t.Error("swap from absent won over a held key")
	}
	if ok, _ := s.Swap(ctx, "s", []byte("0"), []byte("x"), t0.Add(time.Hour)); ok {
		t.Error("swap from a wrong value won")
	}
	if ok, err := s.Swap(ctx, "s", []byte("1"), []byte("2"), t0.Add(time.Hour)); !ok || err != nil {
		t.Errorf("swap from the held value = %v, %v", ok, err)
	}
	if v, _, _ := s.Get(ctx, "s", t0); string(v) != "2" {
		t.Errorf("after swaps: %q", v)
	}
	swins := make(chan bool, 8)
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			won, err := s.Swap(ctx, "s", []byte("2"), []byte(fmt.Sprint("w", i)), t0.Add(time.Hour))
			if err != nil {
				t.Error(err)
			}
			swins <- won
		}(i)
	}
	wg.Wait()
	close(swins)
	n = 0
	for w := range swins {
		if w {
			n++
		}
	}
	if n != 1 {
		t.Errorf("%d concurrent swaps won, want 1", n)
	}
	if sa, ok := s.(detect.SwapAller); ok {
		got, err := sa.SwapAll(ctx, []detect.Swap{{Key: "m1", Value: []byte("a")}, {Key: "m2", Value: []byte("b")}})
		if err != nil || !got[0] || !got[1] {
			t.Fatalf("SwapAll of absent keys = %v, %v", got, err)
		}
		got, err = sa.SwapAll(ctx, []detect.Swap{{Key: "m1", Old: []byte("a"), Value: []byte("a2")}, {Key: "m2", Old: []byte("zz"), Value: []byte("b2")}})
		if err != nil || got[1] {
			t.Errorf("SwapAll with a wrong value = %v, %v", got, err)
		}
		if v, _, _ := s.Get(ctx, "m2", t0); string(v) != "b" {
			t.Errorf("a failed swap wrote: %q", v)
		}
	}
	// Values are copied, not aliased.
	b := []byte("orig")
	s.Put(ctx, "alias", b, time.Time{})
	b[0] = 'X'
	flush()
	if v, _, _ := s.Get(ctx, "alias", t0); !bytes.Equal(v, []byte("orig")) {
		t.Errorf("stored value aliased: %q", v)
	}
}

// Replay runs a generated history through the flow, a batch per record, with a detector
// over s, and returns every change.
func Replay(t testing.TB, s detect.Store, history []byte) []detect.Change {
	t.Helper()
	d, err := detect.New(detect.Default(), s, ipranges.Embedded(), nil)
	if err != nil {
		t.Fatal(err)
	}
	var sink Collect
	f := &flow.Flow{Detector: d, Store: s, Sink: &sink}
	var runErr error
	err = cloudtrail.Read(bytes.NewReader(history), func(r *cloudtrail.Record) {
		if runErr != nil {
			return
		}
		in := &flow.Input{ID: r.EventID, Records: []*cloudtrail.Record{r}}
		f.Run(ctx, []*flow.Input{in})
		runErr = in.Err
	}, func(err error) { t.Errorf("generated record skipped: %v", err) })
	if err != nil || runErr != nil {
		t.Fatal(err, runErr)
	}
	return sink.Changes
}

// Collect is a flow.Sink that keeps every change.
type Collect struct{ Changes []detect.Change }

// Publish implements flow.Sink.
func (c *Collect) Publish(_ context.Context, changes []detect.Change) (flow.Published, error) {
	c.Changes = append(c.Changes, changes...)
	return flow.Published{}, nil
}

// Histories writes seeded random histories with thefts: the reference-model inputs.
func Histories(t testing.TB, seeds []uint64, records int) [][]byte {
	var out [][]byte
	for _, seed := range seeds {
		cfg := gen.Default(records)
		cfg.Seed, cfg.Thefts, cfg.Functions, cfg.Days = seed, 6, 8, 40
		var buf bytes.Buffer
		if _, err := gen.Write(cfg, &buf); err != nil {
			t.Fatal(err)
		}
		out = append(out, buf.Bytes())
	}
	return out
}
