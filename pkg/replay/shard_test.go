package replay

import (
	"bytes"
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/outsider-sec/outsider/internal/storetest"
	"github.com/outsider-sec/outsider/pkg/cloudtrail"
	"github.com/outsider-sec/outsider/pkg/detect"
	"github.com/outsider-sec/outsider/pkg/flow"
	"github.com/outsider-sec/outsider/pkg/ipranges"
	"github.com/outsider-sec/outsider/pkg/store"
)

// failingStore fails every Flush from the n-th on.
type failingStore struct {
	*store.Memory
	flushes, from atomic.Int64
}

var errDiskFull = errors.New("disk full")

func (s *failingStore) Flush(ctx context.Context) error {
	if s.flushes.Add(1) >= s.from.Load() {
		return errDiskFull
	}
	return s.Memory.Flush(ctx)
}

// TestDetectorBesideFailing: one detector beside the reading, several batches in flight,
// whose store fails part way: the failure reaches the reading side at a later batch, and
// stopping waits for the batches still in flight, without a hang.
func TestDetectorBesideFailing(t *testing.T) {
	var recs []*cloudtrail.Record
	for _, h := range storetest.Histories(t, []uint64{5}, 3000) {
		if err := cloudtrail.Read(bytes.NewReader(h), func(r *cloudtrail.Record) { recs = append(recs, r) }, func(err error) { t.Fatal(err) }); err != nil {
			t.Fatal(err)
		}
	}
	for _, failFrom := range []int64{1, 3, 1 << 40} {
		st := &failingStore{Memory: store.NewMemory()}
		st.from.Store(failFrom)
		newDetector := func() (*detect.Detector, error) {
			return detect.New(detect.Default(), st, ipranges.Embedded(), nil)
		}
		mk := func(d *detect.Detector) *flow.Flow {
			return &flow.Flow{Detector: d, Store: st, Sink: &storetest.Collect{}, EveryRecords: 1}
		}
		sh, err := newShards(1, newDetector, mk)
		if err != nil {
			t.Fatal(err)
		}
		if sh.depth < 2 {
			t.Fatalf("one detector beside the reading has %d batch in flight", sh.depth)
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		stop := sh.start(ctx)
		var failed error
		batches := 0
		for i := 0; i+100 <= len(recs) && failed == nil; i += 100 {
			// As the runner decides: room for this batch, then the batch.
			if _, err := sh.wait(sh.depth - 1); err != nil {
				failed = err
				break
			}
			if len(sh.flying) >= sh.depth {
				t.Fatalf("%d batches in flight, at most %d", len(sh.flying), sh.depth)
			}
			sh.send(cloneRecords(recs[i:i+100]), false)
			batches++
		}
		if failed == nil {
			_, failed = sh.wait(0)
		}
		done := make(chan struct{})
		go func() { stop(); close(done) }()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			t.Fatalf("stopping after a failure at flush %d hangs", failFrom)
		}
		cancel()
		switch {
		case failFrom < 1<<40 && !errors.Is(failed, errDiskFull):
			t.Errorf("store failing from flush %d: the run got %v after %d batches, want the store's error", failFrom, failed, batches)
		case failFrom == 1<<40 && failed != nil:
			t.Errorf("a store that never fails: %v", failed)
		}
		if len(sh.flying) != 0 {
			t.Errorf("%d batches still in flight after stop", len(sh.flying))
		}
	}
}

// cloneRecords gives the batch records of its own: decided ones are given back to be
// filled again (cloudtrail.Recycle), and the test sends the same history more than once.
func cloneRecords(rs []*cloudtrail.Record) []*cloudtrail.Record {
	out := make([]*cloudtrail.Record, len(rs))
	for i, r := range rs {
		c := *r
		out[i] = &c
	}
	return out
}
