package replay

import (
	"context"
	"fmt"
	"io"
	"os"

	"github.com/outsider-sec/outsider/pkg/cloudtrail"
)

// Inputs are read in chunks of records, and decided chunk by chunk: in turn, in one
// goroutine, or (--parallel above 1) read, decompressed and parsed in one goroutine while
// the caller's decides, in the same order: the same findings either way.

// chunk is a part of one input, as the reading goroutine hands it on.
type chunk struct {
	file       string // the input's name, on its first chunk
	start      bool
	recs       []*cloudtrail.Record
	bad        []string // reasons of skipped values, in order
	readErr    error    // the input's read error, on its last chunk
	unreadable error    // the input could not be opened
}

const chunkRecords = 512

// produce reads the inputs in order into out, until they are read or ctx is done.
func produce(ctx context.Context, inputs []input, stdin io.Reader, out chan<- chunk) {
	send := func(c chunk) bool {
		select {
		case out <- c:
			return true
		case <-ctx.Done():
			return false
		}
	}
	for _, in := range inputs {
		if !produceOne(in, stdin, send) {
			return
		}
	}
}

// produceOne reads one input into chunks; false when the caller stopped listening.
func produceOne(in input, stdin io.Reader, send func(chunk) bool) bool {
	var r io.Reader = stdin
	if in.path != "-" {
		f, err := os.Open(in.path)
		if err != nil {
			return send(chunk{file: in.path, start: true, unreadable: err})
		}
		defer f.Close()
		r = f
	}
	c := chunk{file: in.path, start: true}
	stopped := false
	err := cloudtrail.Read(r, func(rec *cloudtrail.Record) {
		if stopped {
			return
		}
		c.recs = append(c.recs, rec)
		if len(c.recs) >= chunkRecords {
			stopped = !send(c)
			c = chunk{file: in.path}
		}
	}, func(err error) {
		c.bad = append(c.bad, cloudtrail.Reason(err))
	})
	if stopped {
		return false
	}
	c.readErr = err
	return send(c)
}

// consume counts a chunk and decides on its records.
func (r *runner) consume(ctx context.Context, c chunk) error {
	if c.start {
		if c.unreadable != nil {
			r.batch.Malformed = append(r.batch.Malformed, "unreadable-file")
			fmt.Fprintf(r.stderr, "outsider replay: cannot read %s: %v\n", c.file, unwrapPath(c.unreadable))
			return nil
		}
		r.files++
		r.current = c.file
	}
	r.batch.Malformed = append(r.batch.Malformed, c.bad...)
	for _, rec := range c.recs {
		r.read++
		r.ro.push(rec)
		for {
			old, ok := r.ro.ready()
			if !ok {
				break
			}
			if err := r.process(ctx, old); err != nil {
				return err
			}
		}
	}
	if c.readErr != nil {
		r.batch.Malformed = append(r.batch.Malformed, "unreadable-file")
		fmt.Fprintf(r.stderr, "outsider replay: %s: %v\n", c.file, c.readErr)
	}
	return nil
}

// readInTurn reads and decides in this goroutine.
func (r *runner) readInTurn(ctx context.Context, inputs []input, stdin io.Reader) error {
	var err error
	for _, in := range inputs {
		produceOne(in, stdin, func(c chunk) bool {
			err = r.consume(ctx, c)
			return err == nil
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// readParallel reads in one goroutine and decides in this one.
func (r *runner) readParallel(ctx context.Context, inputs []input, stdin io.Reader) error {
	ctx, cancel := context.WithCancel(ctx)
	ch := make(chan chunk, 16)
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer close(ch)
		produce(ctx, inputs, stdin, ch)
	}()
	var err error
	for c := range ch {
		if err = r.consume(ctx, c); err != nil {
			break
		}
	}
	cancel()
	<-done
	return err
}
