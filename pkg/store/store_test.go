package store

import (
	"bytes"
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/outsider-sec/outsider/pkg/cloudtrail"
	"github.com/outsider-sec/outsider/pkg/detect"
	"github.com/outsider-sec/outsider/pkg/gen"
	"github.com/outsider-sec/outsider/pkg/ipranges"
)

var ctx = context.Background()

// Contract runs the Store contract against any implementation; the DynamoDB store runs it
// too.
func Contract(t *testing.T, s detect.Store) {
	t0 := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	if _, ok, err := s.Get(ctx, "absent", t0); ok || err != nil {
		t.Fatalf("Get(absent) = %v, %v", ok, err)
	}
	if err := s.Put(ctx, "k", []byte("v1"), t0.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
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
	// Values are copied, not aliased.
	b := []byte("orig")
	s.Put(ctx, "alias", b, time.Time{})
	b[0] = 'X'
	if v, _, _ := s.Get(ctx, "alias", t0); !bytes.Equal(v, []byte("orig")) {
		t.Errorf("stored value aliased: %q", v)
	}
}

func TestMemoryContract(t *testing.T) { Contract(t, NewMemory()) }

func TestBoltContract(t *testing.T) {
	b, err := OpenBolt(t.TempDir(), false)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	Contract(t, b)
}

func TestBoltPersistsAndLocks(t *testing.T) {
	dir := t.TempDir()
	b, err := OpenBolt(dir, false)
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	b.Put(ctx, "k", []byte("v"), t0.Add(time.Hour))
	if _, err := OpenBolt(dir, false); err == nil {
		t.Error("a second open of the same state succeeded")
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	b, err = OpenBolt(dir, false)
	if err != nil {
		t.Fatal(err)
	}
	if v, ok, _ := b.Get(ctx, "k", t0); !ok || string(v) != "v" {
		t.Errorf("after reopen: %q %v", v, ok)
	}
	b.Close()
	b, _ = OpenBolt(dir, true)
	defer b.Close()
	if _, ok, _ := b.Get(ctx, "k", t0); ok {
		t.Error("fresh kept old state")
	}
}

// Replay runs a generated history through a detector over s and returns every change.
func Replay(t testing.TB, s detect.Store, history []byte) []detect.Change {
	t.Helper()
	d, err := detect.New(detect.Default(), s, ipranges.Embedded(), nil)
	if err != nil {
		t.Fatal(err)
	}
	var out []detect.Change
	var procErr error
	err = cloudtrail.Read(bytes.NewReader(history), func(r *cloudtrail.Record) {
		if procErr != nil {
			return
		}
		if procErr = d.Process(ctx, r); procErr != nil {
			return
		}
		ch, err := d.Flush(ctx)
		procErr = err
		out = append(out, ch...)
	}, func(err error) { t.Errorf("generated record skipped: %v", err) })
	if err != nil || procErr != nil {
		t.Fatal(err, procErr)
	}
	return out
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

// TestReferenceModel: seeded random histories give identical findings through the
// in-memory reference and the bbolt store.
func TestReferenceModel(t *testing.T) {
	for i, h := range Histories(t, []uint64{1, 2, 3}, 20000) {
		want := Replay(t, NewMemory(), h)
		if len(want) == 0 {
			t.Fatalf("history %d raised no finding: not a useful reference", i)
		}
		b, err := OpenBolt(t.TempDir(), false)
		if err != nil {
			t.Fatal(err)
		}
		got := Replay(t, b, h)
		b.Close()
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("history %d: bolt differs from memory (-memory +bolt):\n%s", i, diff)
		}
	}
}
