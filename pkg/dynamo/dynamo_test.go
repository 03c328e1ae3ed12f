package dynamo_test

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/google/go-cmp/cmp"

	"github.com/outsider-sec/outsider/internal/mototest"
	"github.com/outsider-sec/outsider/internal/storetest"
	"github.com/outsider-sec/outsider/pkg/detect"
	"github.com/outsider-sec/outsider/pkg/dynamo"
	"github.com/outsider-sec/outsider/pkg/store"
)

func TestMain(m *testing.M) { os.Exit(mototest.Main(m)) }

func newStore(t *testing.T, rt http.RoundTripper) *dynamo.Store {
	cfg := mototest.Config(t, rt)
	return dynamo.New(dynamodb.NewFromConfig(cfg), mototest.Table(t, cfg))
}

func TestContract(t *testing.T) { storetest.Contract(t, newStore(t, nil)) }

// TestReferenceModel: the same seeded histories give the same findings through DynamoDB
// as through the in-memory reference.
func TestReferenceModel(t *testing.T) {
	for i, h := range storetest.Histories(t, []uint64{1, 2}, 6000) {
		want := storetest.Replay(t, store.NewMemory(), h)
		if len(want) == 0 {
			t.Fatalf("history %d raised no finding", i)
		}
		got := storetest.Replay(t, newStore(t, nil), h)
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("history %d: DynamoDB differs from memory (-memory +dynamodb):\n%s", i, diff)
		}
	}
}

// counting counts the HTTP requests a client makes.
type counting struct {
	n    atomic.Int64
	next http.RoundTripper
}

func (c *counting) RoundTrip(r *http.Request) (*http.Response, error) {
	c.n.Add(1)
	return c.next.RoundTrip(r)
}

func TestFlushBatches(t *testing.T) {
	c := &counting{next: mototest.Transport()}
	s := newStore(t, c)
	ctx := t.Context()
	for i := 0; i < 60; i++ {
		s.Put(ctx, "k"+string(rune('A'+i)), []byte("v"), storetest.Epoch.Add(1e12))
	}
	before := c.n.Load()
	if err := s.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if got := c.n.Load() - before; got != 3 {
		t.Errorf("60 puts took %d requests, want 3 (25 a batch)", got)
	}
	if s.Pending() != 0 {
		t.Errorf("%d writes still pending", s.Pending())
	}
	if _, ok, err := s.Get(ctx, "kA", storetest.Epoch); !ok || err != nil {
		t.Errorf("flushed item not read back: %v %v", ok, err)
	}
}

// TestRefusedWriteDoesNotBlock: an item DynamoDB refuses (over its 400 KB limit) fails the
// flush that carries it, once; later writes of the same store go through.
func TestRefusedWriteDoesNotBlock(t *testing.T) {
	s := newStore(t, nil)
	ctx := t.Context()
	s.Put(ctx, "huge", make([]byte, 500<<10), storetest.Epoch.Add(1e12))
	if err := s.Flush(ctx); err == nil {
		t.Fatal("a 500 KB item was accepted")
	}
	s.Put(ctx, "small", []byte("v"), storetest.Epoch.Add(1e12))
	if err := s.Flush(ctx); err != nil {
		t.Fatalf("the next flush failed too: %v", err)
	}
	if s.Pending() != 0 {
		t.Errorf("%d writes still pending", s.Pending())
	}
}

// TestRefusedItemDropsOnlyItself: an item over 400 KB gathered with 30 others (two
// BatchWriteItem requests) loses only itself: DynamoDB refuses its whole request, and the
// others of that request are written all the same.
func TestRefusedItemDropsOnlyItself(t *testing.T) {
	s := newStore(t, nil)
	ctx := t.Context()
	for i := range 30 {
		s.Put(ctx, fmt.Sprintf("inv#%012d", i), []byte("functions"), storetest.Epoch.Add(1e12))
	}
	s.Put(ctx, "inv#huge", make([]byte, 500<<10), storetest.Epoch.Add(1e12))
	err := s.Flush(ctx)
	if err == nil {
		t.Fatal("a 500 KB item was accepted")
	}
	for i := range 30 {
		k := fmt.Sprintf("inv#%012d", i)
		if _, ok, err := s.Get(ctx, k, storetest.Epoch); !ok || err != nil {
			t.Errorf("%s lost with the refused item: %v %v (flush: %v)", k, ok, err, err)
		}
	}
	if s.Pending() != 0 {
		t.Errorf("%d writes still pending", s.Pending())
	}
}

// TestSwapAllLosesOnlyTheConflict: of a hundred conditional writes, one whose condition
// fails (another worker wrote the key) is the only one lost: the other 99 are written.
func TestSwapAllLosesOnlyTheConflict(t *testing.T) {
	ctx := context.Background()
	s := newStore(t, nil)
	var swaps []detect.Swap
	for i := range 100 {
		key := fmt.Sprintf("fact#%03d", i)
		if _, err := s.Swap(ctx, key, nil, []byte("v0"), time.Time{}); err != nil {
			t.Fatal(err)
		}
		swaps = append(swaps, detect.Swap{Key: key, Old: []byte("v0"), Value: []byte("v1")})
	}
	swaps[37].Old = []byte("stale") // another worker wrote fact#037 meanwhile
	ok, err := s.SwapAll(ctx, swaps)
	if err != nil {
		t.Fatal(err)
	}
	for i, sw := range swaps {
		v, _, err := s.Get(ctx, sw.Key, time.Time{})
		if err != nil {
			t.Fatal(err)
		}
		want := i != 37
		if ok[i] != want || (string(v) == "v1") != want {
			t.Errorf("%s: ok %v, holds %q; want written %v", sw.Key, ok[i], v, want)
		}
	}
}
