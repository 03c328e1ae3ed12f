package replay

import (
	"context"

	"github.com/outsider-sec/outsider/pkg/cloudtrail"
	"github.com/outsider-sec/outsider/pkg/detect"
	"github.com/outsider-sec/outsider/pkg/flow"
)

// Decisions on every core: each shard is a detector of its own, over the one store,
// deciding for the accounts that hash to it (detect.SetShard says why that concludes what
// one detector concludes). The runner cuts the history into batches as it does for one
// detector and hands each shard its part of a batch; the shards decide their parts side by
// side while the runner reads and orders the next batch.

type shard struct {
	flow *flow.Flow
	in   chan shardWork
	out  chan flow.Summary
	err  error // the shard's input failed: the run stops
}

type shardWork struct {
	in   *flow.Input
	last bool
}

type shards struct {
	list   []*shard
	flight bool                 // a batch is being decided
	flying []*cloudtrail.Record // its records, each once
}

// newShards makes n detectors from newDetector, one a shard (one: a detector deciding
// beside the reading, for every account).
func newShards(n int, newDetector func() (*detect.Detector, error), mk func(*detect.Detector) *flow.Flow) (*shards, error) {
	s := &shards{}
	x := detect.NewExchange()
	for i := range n {
		d, err := newDetector()
		if err != nil {
			return nil, err
		}
		if n > 1 {
			d.SetShard(func(account string) bool { return s.of(account) == i }, x)
		}
		sh := &shard{flow: mk(d), in: make(chan shardWork), out: make(chan flow.Summary, 1)}
		s.list = append(s.list, sh)
	}
	return s, nil
}

// of is the shard of an account: FNV-1a of its id, the same from run to run.
func (s *shards) of(account string) int {
	h := uint32(2166136261)
	for i := 0; i < len(account); i++ {
		h = (h ^ uint32(account[i])) * 16777619
	}
	return int(h % uint32(len(s.list)))
}

// start runs the shards until ctx ends or stop.
func (s *shards) start(ctx context.Context) (stop func()) {
	for _, sh := range s.list {
		go func() {
			for w := range sh.in {
				run := sh.flow.Run
				if w.last {
					run = sh.flow.Finish
				}
				sum := run(ctx, []*flow.Input{w.in})
				sh.err = w.in.Err
				if sh.err != nil {
					// The records after the failure were skipped: the other shards must
					// not wait for what they would have said.
					sh.flow.Detector.Abandon(w.in.Records)
				}
				sh.out <- sum
			}
		}()
	}
	return func() {
		s.wait()
		for _, sh := range s.list {
			close(sh.in)
		}
	}
}

// wait waits for the batch in flight and returns what its parts did, and the first error.
func (s *shards) wait() (flow.Summary, error) {
	var sum flow.Summary
	if !s.flight {
		return sum, nil
	}
	s.flight = false
	var err error
	for _, sh := range s.list {
		sum.Add(<-sh.out)
		if sh.err != nil && err == nil {
			err = sh.err
		}
	}
	if err == nil {
		// Decided by every shard: each cross-account copy was taken from the exchange,
		// and nothing refers to the records any more.
		cloudtrail.Recycle(s.flying)
	}
	clear(s.flying)
	s.flying = s.flying[:0]
	return sum, err
}

// send hands every shard its part of recs: a record to the shard of the account that
// logged it, a cross-account AssumeRole also to the role owner's.
func (s *shards) send(recs []*cloudtrail.Record, last bool) {
	parts := make([][]*cloudtrail.Record, len(s.list))
	s.flying = append(s.flying, recs...)
	for _, r := range recs {
		i := s.of(r.RecipientAccount)
		parts[i] = append(parts[i], r)
		if a, ok := detect.ForeignRole(r); ok {
			if j := s.of(a); j != i {
				parts[j] = append(parts[j], r)
			}
		}
	}
	for i, sh := range s.list {
		// Every shard counts the whole batch: they write at the same batches, as one
		// detector would (what one shard learned and another reads is in the store by then).
		sh.in <- shardWork{in: &flow.Input{ID: "replay", Records: parts[i], Part: max(1, len(recs))}, last: last}
	}
	s.flight = true
}

// stats sums the shards' detector counts.
func (s *shards) stats() detect.Stats {
	var t detect.Stats
	for _, sh := range s.list {
		st := sh.flow.Detector.Stats
		t.Outside += st.Outside
		t.LambdaUsed += st.LambdaUsed
		t.Inactive += st.Inactive
		t.CrossRegion += st.CrossRegion
		t.Created += st.Created
		t.Updated += st.Updated
	}
	return t
}
