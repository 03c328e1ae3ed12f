package store

import (
	"context"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/outsider-sec/outsider/internal/storetest"
	"github.com/outsider-sec/outsider/pkg/detect"
)

var ctx = context.Background()

var (
	_ detect.Store = (*Memory)(nil)
	_ detect.Store = (*Bolt)(nil)
)

func TestMemoryContract(t *testing.T) { storetest.Contract(t, NewMemory()) }

func TestBoltContract(t *testing.T) {
	b, err := OpenBolt(t.TempDir(), false)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	storetest.Contract(t, b)
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
	// --fresh while another replay holds the state: refused, and nothing deleted.
	if _, err := OpenBolt(dir, true); err == nil {
		t.Error("a fresh open of a state in use succeeded")
	}
	if err := b.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if v, ok, _ := b.Get(ctx, "k", t0); !ok || string(v) != "v" {
		t.Errorf("a refused fresh open emptied the state in use: %q %v", v, ok)
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

// TestReferenceModel: seeded random histories give identical findings through the
// in-memory reference and the bbolt store.
func TestReferenceModel(t *testing.T) {
	for i, h := range storetest.Histories(t, []uint64{1, 2, 3}, 20000) {
		want := storetest.Replay(t, NewMemory(), h)
		if len(want) == 0 {
			t.Fatalf("history %d raised no finding: not a useful reference", i)
		}
		b, err := OpenBolt(t.TempDir(), false)
		if err != nil {
			t.Fatal(err)
		}
		got := storetest.Replay(t, b, h)
		b.Close()
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("history %d: bolt differs from memory (-memory +bolt):\n%s", i, diff)
		}
	}
}
