package store

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	bolt "go.etcd.io/bbolt"

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

// TestBoltForget: past the horizon a replay sets, what expired is never written and what
// expires soon is held in memory (read back all the while) until it expires or Close
// writes it; what lives longer is committed at Flush as always.
func TestBoltForget(t *testing.T) {
	dir := t.TempDir()
	b, err := OpenBolt(dir, false)
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Date(2026, 3, 10, 0, 0, 0, 0, time.UTC)
	b.Forget(t0)
	b.Put(ctx, "expired", []byte("a"), t0.Add(-time.Hour))
	b.Put(ctx, "soon", []byte("b"), t0.Add(time.Hour))
	b.Put(ctx, "later", []byte("c"), t0.Add(30*24*time.Hour))
	b.Put(ctx, "never", []byte("d"), time.Time{})
	if _, ok, _ := b.Get(ctx, "expired", time.Time{}); !ok {
		t.Error("an item expired before the horizon is not read back before its commit")
	}
	if err := b.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if v, ok, _ := b.Get(ctx, "soon", time.Time{}); !ok || string(v) != "b" {
		t.Errorf("a held item is not read back: %q %v", v, ok)
	}
	onDisk := func() map[string]bool {
		got := map[string]bool{}
		b.db.View(func(tx *bolt.Tx) error {
			return tx.Bucket(bucket).ForEach(func(k, _ []byte) error { got[string(k)] = true; return nil })
		})
		return got
	}
	if diff := cmp.Diff(map[string]bool{"later": true, "never": true}, onDisk()); diff != "" {
		t.Errorf("after Flush, on disk (-want +got):\n%s", diff)
	}
	if _, ok, _ := b.Get(ctx, "expired", time.Time{}); ok {
		t.Error("an item expired before the horizon is still held after the commit")
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	b, err = OpenBolt(dir, false)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if diff := cmp.Diff(map[string]bool{"later": true, "never": true, "soon": true}, onDisk()); diff != "" {
		t.Errorf("after Close, on disk (-want +got):\n%s", diff)
	}
}

// TestBoltKeyFilter: the filter that spares reading keys never written answers "not there"
// only for those: every key written is read back, in the process that wrote it (across a
// rebuild: three times the keys a fresh filter is built for) and after reopening, and the
// filter does spare the reads of absent keys.
func TestBoltKeyFilter(t *testing.T) {
	dir := t.TempDir()
	b, err := OpenBolt(dir, false)
	if err != nil {
		t.Fatal(err)
	}
	const keys = 3 * filterMinBits / filterBitsPerKey
	key := func(i int) string { return fmt.Sprintf("key#%d", i) }
	for i := range keys {
		if err := b.Put(ctx, key(i), []byte("v"), time.Time{}); err != nil {
			t.Fatal(err)
		}
	}
	if err := b.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	check := func(when string) {
		t.Helper()
		for i := range keys {
			if _, ok, err := b.Get(ctx, key(i), time.Time{}); err != nil || !ok {
				t.Fatalf("%s: %s not read back (%v)", when, key(i), err)
			}
		}
		maybe := 0
		for i := keys; i < 2*keys; i++ {
			if _, ok, _ := b.Get(ctx, key(i), time.Time{}); ok {
				t.Fatalf("%s: %s was never written", when, key(i))
			}
			if b.ondisk.mayHave(key(i)) {
				maybe++
			}
		}
		if maybe > keys/100 {
			t.Errorf("%s: the filter may have %d of %d keys never written", when, maybe, keys)
		}
	}
	check("written")
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if b, err = OpenBolt(dir, false); err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	check("reopened")
}

// TestBoltFlushBesideWrites: while a Flush writes, without the lock, reads see what it
// writes and writes go on; a key written again meanwhile keeps its newer value, on disk
// after the next commit. A write that fails gives its items back, but never over a newer
// value.
func TestBoltFlushBesideWrites(t *testing.T) {
	defer func() { flushHook = nil }()
	dir := t.TempDir()
	b, err := OpenBolt(dir, false)
	if err != nil {
		t.Fatal(err)
	}
	get := func(key string) string {
		v, ok, err := b.Get(ctx, key, time.Time{})
		if err != nil || !ok {
			return fmt.Sprintf("absent (%v)", err)
		}
		return string(v)
	}
	b.Put(ctx, "k1", []byte("v1"), time.Time{})
	b.Put(ctx, "k2", []byte("v2"), time.Time{})
	ran := false
	flushHook = func(b *Bolt) {
		ran = true
		if got := get("k1"); got != "v1" {
			t.Errorf("during the commit, k1 = %s, want v1", got)
		}
		if ok, _ := b.Claim(ctx, "k2", []byte("x"), time.Time{}, time.Time{}); ok {
			t.Error("during the commit, k2 was claimed: the value being written is not seen")
		}
		b.Put(ctx, "k1", []byte("v1b"), time.Time{})
		b.Put(ctx, "k3", []byte("v3"), time.Time{})
		if b.gathered != 2 || len(b.pending) != 2 {
			t.Errorf("during the commit, %d writes gathered, %d pending; want 2 and 2", b.gathered, len(b.pending))
		}
	}
	if err := b.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if !ran {
		t.Fatal("the hook did not run")
	}
	flushHook = nil
	for k, want := range map[string]string{"k1": "v1b", "k2": "v2", "k3": "v3"} {
		if got := get(k); got != want {
			t.Errorf("after the commit, %s = %s, want %s", k, got, want)
		}
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if b, err = OpenBolt(dir, false); err != nil {
		t.Fatal(err)
	}
	for k, want := range map[string]string{"k1": "v1b", "k2": "v2", "k3": "v3"} {
		if got := get(k); got != want {
			t.Errorf("reopened, %s = %s, want %s", k, got, want)
		}
	}

	// A failed write: the database closed under it.
	b.Put(ctx, "k1", []byte("v1c"), time.Time{})
	b.Put(ctx, "k4", []byte("v4"), time.Time{})
	flushHook = func(b *Bolt) {
		b.Put(ctx, "k1", []byte("v1d"), time.Time{})
		b.db.Close()
	}
	if err := b.Flush(ctx); err == nil {
		t.Fatal("a Flush whose write failed returned no error")
	}
	got := map[string]string{}
	for k, it := range b.pending {
		got[k] = string(it.value)
	}
	if diff := cmp.Diff(map[string]string{"k1": "v1d", "k4": "v4"}, got); diff != "" {
		t.Errorf("after a failed write, gathered (-want +got):\n%s", diff)
	}
	if b.inflight != nil {
		t.Error("after a failed write, items are still in flight")
	}
}
