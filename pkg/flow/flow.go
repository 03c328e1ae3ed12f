// Package flow is the one path of CloudTrail records through Outsider, whichever edge they
// came in by: a batch of records in, decisions in event-time order, the state flushed at
// the batch's end, the findings it opened or updated handed to a sink, one summary out.
//
// The Lambda (pkg/pipeline: SQS messages in, Security Hub and email out) and the replay
// (pkg/replay: files in, lines out) are its two edges. What they share is here: how a
// failure reaches the inputs that must be retried, how the deadline defers records, and
// how one email per finding is claimed (Mailer).
package flow

import (
	"context"
	"errors"
	"log/slog"
	"slices"
	"time"

	"github.com/outsider-sec/outsider/pkg/cloudtrail"
	"github.com/outsider-sec/outsider/pkg/detect"
)

// Input is one unit of delivery: an SQS message, a part of a file. Its records succeed or
// are retried together.
type Input struct {
	ID        string
	Records   []*cloudtrail.Record
	Malformed []string // reasons of the values that were not records: counted, never retried
	// Part: the records of the whole batch this input is a part of (a replay's shard gets
	// the records of its accounts): what counts toward Flow.EveryRecords, so that every
	// shard writes at the same batches. 0: its own records.
	Part int

	// Err is set by Run when the input must be delivered again (its record met a store
	// failure, the sink refused a finding it counted in, or the deadline came first).
	Err error

	findings []string // ids of the findings its records opened or updated
}

// Sink takes the findings a batch opened or updated, in the order they first changed.
type Sink interface {
	// Publish hands changes on. Failed names the findings it could not hand on, with why:
	// the inputs counted in them are retried. An error fails every input of the batch.
	Publish(ctx context.Context, changes []detect.Change) (Published, error)
}

// Published is what a sink did with a batch's changes.
type Published struct {
	Emails int
	Failed map[string]error // finding id -> why it was not handed on
}

// Summary is what batches did.
type Summary struct {
	Inputs     int
	Failed     int // inputs to deliver again
	Records    int
	Malformed  map[string]int // by reason
	Outside    int
	LambdaUsed int
	Withheld   int // calls with a Lambda's token from outside, in their account's activation period: no finding
	Created    int
	Updated    int
	Emails     int
	StoreCalls int
	Deferred   int // records left for a redelivery: the deadline was near
}

// MalformedTotal is the number of values skipped, all reasons.
func (s Summary) MalformedTotal() int {
	n := 0
	for _, c := range s.Malformed {
		n += c
	}
	return n
}

// Add counts o into s.
func (s *Summary) Add(o Summary) {
	s.Inputs += o.Inputs
	s.Failed += o.Failed
	s.Records += o.Records
	for k, v := range o.Malformed {
		if s.Malformed == nil {
			s.Malformed = map[string]int{}
		}
		s.Malformed[k] += v
	}
	s.Outside += o.Outside
	s.LambdaUsed += o.LambdaUsed
	s.Withheld += o.Withheld
	s.Created += o.Created
	s.Updated += o.Updated
	s.Emails += o.Emails
	s.StoreCalls += o.StoreCalls
	s.Deferred += o.Deferred
}

// ErrDeadline fails the inputs a batch had no time for: they are delivered again.
var ErrDeadline = errors.New("flow: not processed before the deadline")

// Flow runs batches through one detector over one store. It is not safe for concurrent
// use: give each worker its own, over a shared store.
type Flow struct {
	Detector *detect.Detector
	Store    detect.Store
	Sink     Sink
	Log      *slog.Logger // nil: none

	// EveryRecords writes the state and hands the findings on once this many records
	// (Input.Part) were decided since the last write (and at Finish); 0: at every batch. A
	// worker that may die between batches (the Lambda) writes every time; a replay, which
	// prints at its end what a crash would lose, need not: a finding changed in many
	// batches is then written and printed once, and the embedded store commits a few times
	// a minute instead of every batch. Records, not batches: a replay's batches end at an
	// hour of event time, and a history of quiet accounts is hundreds of small batches a day.
	EveryRecords int
	// Margin is the time kept before the context's deadline to flush and answer: records
	// not started by then are deferred (their inputs fail with ErrDeadline).
	Margin time.Duration

	since int // records decided since the last write
}

// Run decides on the inputs' records in event-time order (within a second, records that
// may teach before calls from outside; otherwise stable), flushes the state and hands the changes to the sink. Inputs that must
// be delivered again have Err set; the summary counts them in Failed.
func (f *Flow) Run(ctx context.Context, inputs []*Input) Summary { return f.run(ctx, inputs, false) }

// Finish is Run for the last batch: everything the detector holds is written.
func (f *Flow) Finish(ctx context.Context, inputs []*Input) Summary {
	return f.run(ctx, inputs, true)
}

type item struct {
	in   *Input
	r    *cloudtrail.Record
	rank int // within a second, what teaches (0) before what is decided (1)
}

// order sorts items as learning needs them (an AssumeRole before the calls made with its
// key), whatever order the inputs came in: by time, and within one time what teaches
// first, each stable. Only records that share their time with another are ranked: a
// replay's batches come in order, most records alone at their second, and ranking is an
// address lookup (4% of a replay's deciding goroutine).
func order(items []item, rank func(*cloudtrail.Record) int) {
	byTime := func(a, b item) int { return a.r.Time.Compare(b.r.Time) }
	if !slices.IsSortedFunc(items, byTime) {
		slices.SortStableFunc(items, byTime)
	}
	for i := 0; i < len(items); {
		j := i + 1
		for j < len(items) && items[j].r.Time.Equal(items[i].r.Time) {
			j++
		}
		if j-i > 1 {
			for k := i; k < j; k++ {
				items[k].rank = rank(items[k].r)
			}
			slices.SortStableFunc(items[i:j], func(a, b item) int { return a.rank - b.rank })
		}
		i = j
	}
}

func (f *Flow) run(ctx context.Context, inputs []*Input, last bool) Summary {
	det := f.Detector
	before := det.Stats
	sum := Summary{Inputs: len(inputs)}
	n := 0
	for _, in := range inputs {
		n += len(in.Records)
	}
	items := make([]item, 0, n)
	for _, in := range inputs {
		in.Err, in.findings = nil, in.findings[:0]
		for _, r := range in.Records {
			items = append(items, item{in: in, r: r})
		}
		for _, reason := range in.Malformed {
			if sum.Malformed == nil {
				sum.Malformed = map[string]int{}
			}
			sum.Malformed[reason]++
		}
	}
	sum.Records = len(items)
	order(items, det.Rank)
	deadline, hasDeadline := ctx.Deadline()
	for i, it := range items {
		if it.in.Err != nil {
			continue
		}
		if hasDeadline && i%64 == 0 && time.Until(deadline) < f.Margin {
			// Stop taking records while there is time to write what was decided and
			// answer: the inputs not yet done are retried, not timed out as a batch.
			for _, rest := range items[i:] {
				if rest.in.Err == nil {
					rest.in.Err = ErrDeadline
				}
			}
			sum.Deferred = len(items) - i
			break
		}
		id, err := det.Process(ctx, it.r)
		if err != nil {
			it.in.Err = err
			continue
		}
		if id != "" && (len(it.in.findings) == 0 || it.in.findings[len(it.in.findings)-1] != id) {
			it.in.findings = append(it.in.findings, id)
		}
	}
	sum.Emails = f.flush(ctx, inputs, last)

	st := det.Stats
	sum.Outside = st.Outside - before.Outside
	sum.LambdaUsed = st.LambdaUsed - before.LambdaUsed
	sum.Withheld = st.Inactive - before.Inactive
	sum.Created = st.Created - before.Created
	sum.Updated = st.Updated - before.Updated
	sum.StoreCalls = (st.StoreReads + st.StoreWrites + st.StoreClaims) - (before.StoreReads + before.StoreWrites + before.StoreClaims)
	for _, in := range inputs {
		if in.Err != nil {
			sum.Failed++
		}
	}
	return sum
}

// flush writes the state and publishes the changes; it returns the emails sent.
func (f *Flow) flush(ctx context.Context, inputs []*Input, last bool) int {
	failAll := func(err error) {
		for _, in := range inputs {
			if in.Err == nil {
				in.Err = err
			}
		}
	}
	for _, in := range inputs {
		if in.Part > 0 {
			f.since += in.Part
		} else {
			f.since += len(in.Records)
		}
	}
	if !last && f.since < f.EveryRecords {
		return 0
	}
	f.since = 0
	flush := f.Detector.FlushBatch
	if last {
		flush = f.Detector.Flush
	}
	changes, err := flush(ctx)
	if err == nil {
		// What is handed on is written first: after a crash, a finding is not handed on
		// (or emailed) as new a second time.
		err = f.Store.Flush(ctx)
	}
	if err != nil {
		failAll(err)
		return 0
	}
	if len(changes) == 0 {
		return 0
	}
	pub, err := f.Sink.Publish(ctx, changes)
	if err != nil {
		failAll(err)
	}
	for id, why := range pub.Failed {
		for _, in := range inputs {
			if in.Err == nil && slices.Contains(in.findings, id) {
				in.Err = why
			}
		}
	}
	if err := f.Store.Flush(ctx); err != nil && f.Log != nil {
		// Only give-backs of failed sends are left to write here (sent marks are
		// written by the Mailer before it returns): they wait for the next batch.
		f.Log.WarnContext(ctx, "marks of the published findings not written yet", "error", err)
	}
	return pub.Emails
}
