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
	out  chan shardDone
}

type shardWork struct {
	in   *flow.Input
	last bool
}

// shardDone is what a shard did with one batch; err: its input failed, the run stops.
type shardDone struct {
	sum flow.Summary
	err error
}

type shards struct {
	list []*shard
	// depth is how many batches may be in flight: several shards write the state at the
	// same batches (what one learned is in the store when another reads it), so they go
	// batch by batch together; one detector beside the reading decides its batches in
	// order whatever the reading does, and a few in flight absorb the batches' uneven
	// cost instead of each side waiting for the other at every batch.
	depth  int
	flying [][]*cloudtrail.Record // the batches in flight, oldest first: their records, each once
	spare  [][]*cloudtrail.Record // emptied ones, for the next batches
}

// detectorDepth is how many batches one detector beside the reading may have in flight.
// On two vCPUs, a file per account (400 files, 1,128 batches of an hour): at most one in
// flight left each side waiting on the other at every batch.
const detectorDepth = 4

// newShards makes n detectors from newDetector, one a shard (one: a detector deciding
// beside the reading, for every account).
func newShards(n int, newDetector func() (*detect.Detector, error), mk func(*detect.Detector) *flow.Flow) (*shards, error) {
	s := &shards{depth: 1}
	if n == 1 {
		s.depth = detectorDepth
	}
	x := detect.NewExchange()
	for i := range n {
		d, err := newDetector()
		if err != nil {
			return nil, err
		}
		if n > 1 {
			d.SetShard(func(account string) bool { return s.of(account) == i }, x)
		}
		sh := &shard{flow: mk(d), in: make(chan shardWork, s.depth), out: make(chan shardDone, s.depth)}
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
				if w.in.Err != nil {
					// The records after the failure were skipped: the other shards must
					// not wait for what they would have said.
					sh.flow.Detector.Abandon(w.in.Records)
				}
				sh.out <- shardDone{sum, w.in.Err}
			}
		}()
	}
	return func() {
		s.wait(0)
		for _, sh := range s.list {
			close(sh.in)
		}
	}
}

// wait waits for the oldest batches in flight until at most n are, and returns what their
// parts did, and the first error.
func (s *shards) wait(n int) (flow.Summary, error) {
	var sum flow.Summary
	var err error
	for len(s.flying) > n {
		failed := false
		for _, sh := range s.list {
			d := <-sh.out
			sum.Add(d.sum)
			if d.err != nil {
				failed = true
				if err == nil {
					err = d.err
				}
			}
		}
		recs := s.flying[0]
		if !failed {
			// Decided by every shard: each cross-account copy was taken from the
			// exchange, and nothing refers to the records any more.
			cloudtrail.Recycle(recs)
		}
		clear(recs)
		s.spare = append(s.spare, recs[:0])
		s.flying[0] = nil
		s.flying = s.flying[1:]
	}
	return sum, err
}

// send hands every shard its part of recs: a record to the shard of the account that
// logged it, a cross-account AssumeRole also to the role owner's. There must be room in
// flight (wait(depth-1)).
func (s *shards) send(recs []*cloudtrail.Record, last bool) {
	parts := make([][]*cloudtrail.Record, len(s.list))
	var flying []*cloudtrail.Record
	if n := len(s.spare); n > 0 {
		flying, s.spare = s.spare[n-1], s.spare[:n-1]
	}
	flying = append(flying, recs...) // recs is the caller's to reuse
	s.flying = append(s.flying, flying)
	if len(s.list) == 1 {
		// One detector beside the reading decides every record: hashing each one's
		// account, read from the cache of the core that parsed it, was 3% of a run.
		parts[0] = flying
	} else {
		for _, r := range recs {
			i := s.of(r.RecipientAccount)
			parts[i] = append(parts[i], r)
			if a, ok := detect.ForeignRole(r); ok {
				if j := s.of(a); j != i {
					parts[j] = append(parts[j], r)
				}
			}
		}
	}
	for i, sh := range s.list {
		// Every shard counts the whole batch: they write at the same batches, as one
		// detector would (what one shard learned and another reads is in the store by then).
		sh.in <- shardWork{in: &flow.Input{ID: "replay", Records: parts[i], Part: max(1, len(recs))}, last: last}
	}
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
