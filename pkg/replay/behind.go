package replay

import (
	"context"
	"sync"

	"github.com/outsider-sec/outsider/pkg/detect"
	"github.com/outsider-sec/outsider/pkg/flow"
)

// Writing behind the decisions. With a detector deciding beside the reading (--parallel
// above 1), the detector's goroutine is the one the run waits for, and writing the state
// and printing the findings were a quarter of its time. A flow's flush still works out on
// that goroutine what changed (what a later decision reads), but commits the state and
// prints through writeBehind: one goroutine that does them in the order they were asked
// for, while the detector goes on with the next records. A batch's findings are printed
// after the commit that holds them (flow.Flow.flush asks in that order), so a replay that
// dies never printed a finding its state does not hold, as when they were written in
// turn. The embedded store reads what a commit is writing from memory (store.Bolt.Flush).

// writeBehind runs jobs in order on a goroutine of its own. After one fails, it runs no
// more: what follows a failed commit would print findings the state does not hold.
type writeBehind struct {
	jobs   chan func() error
	done   chan struct{}
	closed sync.Once
	mu     sync.Mutex
	err    error
}

// behindDepth is how many jobs may wait: more, and the detector waits for the writing.
const behindDepth = 4

func newWriteBehind() *writeBehind {
	w := &writeBehind{jobs: make(chan func() error, behindDepth), done: make(chan struct{})}
	go func() {
		defer close(w.done)
		for job := range w.jobs {
			if w.failed() != nil {
				continue
			}
			if err := job(); err != nil {
				w.mu.Lock()
				w.err = err
				w.mu.Unlock()
			}
		}
	}()
	return w
}

func (w *writeBehind) failed() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.err
}

// do queues job, and returns the error of a job that failed before it, if any.
func (w *writeBehind) do(job func() error) error {
	if err := w.failed(); err != nil {
		return err
	}
	w.jobs <- job
	return nil
}

// close waits for every job queued and returns the first error; again, the same.
func (w *writeBehind) close() error {
	w.closed.Do(func() { close(w.jobs) })
	<-w.done
	return w.failed()
}

// behindStore is a store whose Flush is a job of w.
type behindStore struct {
	detect.Store
	w *writeBehind
}

func (s behindStore) Flush(ctx context.Context) error {
	return s.w.do(func() error { return s.Store.Flush(ctx) })
}

// behindSink is a sink whose Publish is a job of w. The changes are the flow's to give
// away: a flush makes them anew, from what it wrote.
type behindSink struct {
	flow.Sink
	w *writeBehind
}

func (s behindSink) Publish(ctx context.Context, changes []detect.Change) (flow.Published, error) {
	return flow.Published{}, s.w.do(func() error {
		_, err := s.Sink.Publish(ctx, changes)
		return err
	})
}
