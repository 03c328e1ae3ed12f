package cloudtrail

import (
	"sync"
	"time"
)

// parallelParse parses NDJSON lines in blocks on worker goroutines and hands the results
// on in the order of the lines.
type parallelParse struct {
	o       *out
	jobs    chan *block
	pending []*block // submitted, in order
	cur     *block
	free    chan *block
	wg      sync.WaitGroup
}

// block is a run of lines and, once parsed, what they gave.
type block struct {
	data   []byte
	ends   []int // end offset of each line in data
	events []event
	done   chan struct{}
}

// event is a record, or the reason a value was skipped.
type event struct {
	rec *Record
	err error
}

// blockBytes is the size of a block of lines: large enough that handing it over costs
// nothing next to parsing it, small enough to keep memory flat.
const blockBytes = 256 << 10

func newParallelParse(workers int, o *out) *parallelParse {
	p := &parallelParse{o: o, jobs: make(chan *block), free: make(chan *block, 4*workers)}
	for range workers {
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			a := &arena{}
			for b := range p.jobs {
				b.parse(o.latest, a)
				close(b.done)
			}
		}()
	}
	return p
}

func (b *block) parse(latest time.Time, a *arena) {
	sink := &out{latest: latest, arena: a,
		emit: func(r *Record) { b.events = append(b.events, event{rec: r}) },
		bad:  func(err error) { b.events = append(b.events, event{err: err}) },
	}
	start := 0
	for _, end := range b.ends {
		parseValue(b.data[start:end], 0, sink)
		start = end
	}
}

// add copies a line into the current block, and submits the block when it is full.
func (p *parallelParse) add(line []byte) {
	if p.cur == nil {
		select {
		case p.cur = <-p.free:
		default:
			p.cur = &block{}
		}
		p.cur.done = make(chan struct{})
	}
	b := p.cur
	b.data = append(b.data, line...)
	b.ends = append(b.ends, len(b.data))
	if len(b.data) >= blockBytes {
		p.submit()
	}
}

// submit hands the current block to a worker, then hands on the results of the blocks
// already parsed, oldest first; it waits for the oldest when too many are in flight.
func (p *parallelParse) submit() {
	p.pending = append(p.pending, p.cur)
	p.jobs <- p.cur
	p.cur = nil
	for len(p.pending) > 0 {
		head := p.pending[0]
		if len(p.pending) < cap(p.free) {
			select {
			case <-head.done:
			default:
				return
			}
		} else {
			<-head.done
		}
		p.deliver(head)
		p.pending = p.pending[1:]
	}
}

func (p *parallelParse) deliver(b *block) {
	for _, e := range b.events {
		if e.rec != nil {
			p.o.emit(e.rec)
		} else {
			p.o.bad(e.err)
		}
	}
	b.data, b.ends, b.events = b.data[:0], b.ends[:0], b.events[:0]
	clear(b.events[:cap(b.events)])
	select {
	case p.free <- b:
	default:
	}
}

// flush submits what is left and hands on every result.
func (p *parallelParse) flush() {
	if p.cur != nil && len(p.cur.ends) > 0 {
		p.submit()
	}
	for _, b := range p.pending {
		<-b.done
		p.deliver(b)
	}
	p.pending = p.pending[:0]
}

// close stops the workers (after flush, or when reading failed).
func (p *parallelParse) close() {
	close(p.jobs)
	p.wg.Wait()
}
