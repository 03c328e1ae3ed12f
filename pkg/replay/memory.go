package replay

import (
	"runtime/debug"
	"runtime/metrics"
	"sync"
	"time"
)

// memoryLimit is the replay's soft limit on the runtime's memory when streams inputs are
// read side by side. 72 MiB keeps the process near 100 MB with the state file's pages on a
// dense history of 400 accounts, whether as one file or a file per account; each input
// read side by side past 400 adds 20 KiB (its coroutine's stack, the records of its last
// read until decided, the part of a line it carries).
func memoryLimit(streams int) int64 {
	return 72<<20 + int64(max(streams-400, 0))*20<<10
}

// headroom is what the limit leaves the heap above its live bytes, at the least (see
// limiter). 16 MiB had a 400-account trail folder peak at 96 MB; 8 MiB left a 1,000-account
// one 145 collections (13.0 s against 10.9 s here). Past 64 MiB live it grows by half of
// what is above: a collection marks the whole live heap, and 400 per-account JSON
// documents, each parsed whole, held 300–380 MB until decided, which at a fixed 12 MiB
// was a collection every 12 MiB allocated, 53 s of mostly marking.
func headroom(live int64) int64 {
	return 12<<20 + max(live-64<<20, 0)/2
}

// limiter keeps the soft memory limit at least headroom above what the heap holds live
// (with what the runtime holds beside it), never under the base it was given. A fixed
// limit is right only for the histories it was measured on: a trail folder of 1,000
// accounts holds 45-60 MB live (the detector's facts grow with the accounts), and under
// 72 MiB the collector ran 378 times instead of 34, its pace capped by the runtime at half
// the CPU: 15.4 s against 10.9 s with this (102 collections), for a peak RSS of 116 MB
// against 125 MB. A 400-account history stays near the base: its trail folder peaked at
// 94 MB against 92–95 MB under the fixed limit, in the same time.
type limiter struct {
	mu      sync.Mutex // the checks (the ticker's, setBase's) one at a time
	base    int64
	current int64
	stop    chan struct{}
	done    chan struct{}
	samples []metrics.Sample
}

// limiterMetrics: the heap's live bytes as of the last collection, then what the runtime
// holds, less what it does not count against the limit or as the heap's.
var limiterMetrics = []string{
	"/gc/heap/live:bytes",
	"/memory/classes/total:bytes",
	"/memory/classes/heap/released:bytes",
	"/memory/classes/heap/free:bytes",
	"/memory/classes/heap/objects:bytes",
}

// startLimiter sets the limit to base and keeps it there or above, checking every 50 ms,
// until close.
func startLimiter(base int64) *limiter {
	l := &limiter{base: base, stop: make(chan struct{}), done: make(chan struct{})}
	for _, name := range limiterMetrics {
		l.samples = append(l.samples, metrics.Sample{Name: name})
	}
	l.set(base) // before the checks start
	go func() {
		defer close(l.done)
		t := time.NewTicker(50 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-l.stop:
				return
			case <-t.C:
				l.check()
			}
		}
	}()
	return l
}

// setBase changes the base (the inputs are known once listed).
func (l *limiter) setBase(base int64) {
	l.mu.Lock()
	l.base = base
	l.mu.Unlock()
	l.check()
}

// check raises the limit when the live heap, the runtime's memory beside the heap and
// headroom exceed it, or lowers it back towards the base.
func (l *limiter) check() {
	l.mu.Lock()
	defer l.mu.Unlock()
	metrics.Read(l.samples)
	for _, s := range l.samples {
		if s.Value.Kind() != metrics.KindUint64 {
			return // not in this runtime: the base stays
		}
	}
	v := func(i int) int64 { return int64(l.samples[i].Value.Uint64()) }
	// What the runtime holds beside the heap's objects and its free pages: stacks, its
	// metadata, and the unused room of the pages that hold objects (a trail folder's: up to
	// 17 MB), which the heap's goal under the limit counts as the heap's.
	besides := max(v(1)-v(2)-v(3)-v(4), 0)
	live := v(0)
	want := max(l.base, live+besides+headroom(live))
	// Moved by a MiB or more up, four down (not at every check), and never left under
	// the base.
	if d := want - l.current; d > 1<<20 || d < -(4<<20) || l.current < l.base {
		l.set(want)
	}
}

func (l *limiter) set(n int64) {
	l.current = n
	debug.SetMemoryLimit(n)
}

// close stops the checks; the limit stays where it is (the caller restores its own).
func (l *limiter) close() {
	close(l.stop)
	<-l.done
}
