package replay

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"sync"

	"github.com/outsider-sec/outsider/pkg/cloudtrail"
)

// Inputs are read in chunks of records, and decided chunk by chunk, in input order: in
// turn, in one goroutine, or (--parallel N above 1) read, decompressed and parsed by N
// goroutines while the caller's decides, in the same order: the same findings either way.

// chunk is a part of one input, as a reading goroutine hands it on.
type chunk struct {
	file       string // the input's name, on its first chunk
	start      bool
	recs       []*cloudtrail.Record
	bad        []string // reasons of skipped values, in order
	readErr    error    // the input's read error, on its last chunk
	unreadable error    // the input could not be opened
}

const chunkRecords = 512

// wholeFile bounds the files read whole into memory (a trail's log files are kilobytes);
// larger ones are streamed.
const wholeFile = 4 << 20

// reader reads inputs; it keeps its buffer from one file to the next.
type reader struct {
	buf     []byte
	workers int // goroutines that parse the lines of a large input (0, 1: this one)
}

// produceOne reads one input into chunks; false when the caller stopped listening.
func (rd *reader) produceOne(in input, stdin io.Reader, send func(chunk) bool) bool {
	var r io.Reader = stdin
	workers := rd.workers // a small file is parsed in this goroutine: files are read side by side
	if in.path != "-" {
		if in.regular {
			data, rest, err := rd.readHead(in.path)
			if err != nil {
				return send(chunk{file: in.path, start: true, unreadable: err})
			}
			if rest == nil {
				r, workers = bytes.NewReader(data), 1
			} else {
				defer rest.Close()
				r = io.MultiReader(bytes.NewReader(data), rest)
			}
		} else {
			f, err := os.Open(in.path)
			if err != nil {
				return send(chunk{file: in.path, start: true, unreadable: err})
			}
			defer f.Close()
			r = f
		}
	}
	c := chunk{file: in.path, start: true}
	stopped := false
	err := cloudtrail.ReadN(r, workers, func(rec *cloudtrail.Record) {
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

// readHead reads a regular file whole into the reader's buffer when it is at most
// wholeFile bytes; a larger one comes back as its first bytes and the open file for the
// rest. A whole read is three system calls (open, read, close), where a streamed one
// takes twice as many: a trail folder is tens of thousands of small files.
func (rd *reader) readHead(path string) ([]byte, io.ReadCloser, error) {
	f, err := openRaw(path)
	if err != nil {
		return nil, nil, err
	}
	if cap(rd.buf) < 64<<10 {
		rd.buf = make([]byte, 0, 64<<10)
	}
	buf := rd.buf[:0]
	for {
		if len(buf) == cap(buf) {
			if cap(buf) >= wholeFile {
				rd.buf = buf[:0]
				return buf, f, nil
			}
			buf = append(buf, make([]byte, cap(buf))...)[:len(buf)]
		}
		n, err := f.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if err == io.EOF || n == 0 && err == nil {
			break
		}
		if err != nil {
			f.Close()
			return nil, nil, err
		}
	}
	rd.buf = buf[:0]
	return buf, nil, f.Close()
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
	var rd reader
	for _, in := range inputs {
		rd.produceOne(in, stdin, func(c chunk) bool {
			err = r.consume(ctx, c)
			return err == nil
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// jobFiles is how many consecutive inputs a reading goroutine takes at once: a trail
// folder's files hold a few records each, and handing them over one by one would cost as
// much as reading them.
const jobFiles = 32

// readParallel reads with n goroutines, each taking the next inputs, and decides in this
// one, input after input in their order: each job's chunks go through a channel of its
// own, and the channels are taken in input order. At most 4n jobs are read ahead.
func (r *runner) readParallel(ctx context.Context, inputs []input, stdin io.Reader, n int) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	type job struct {
		ins []input
		out chan chunk
	}
	jobs := make(chan job)
	order := make(chan chan chunk, 4*n)
	var wg sync.WaitGroup
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rd := reader{workers: n}
			for j := range jobs {
				for _, in := range j.ins {
					if !rd.produceOne(in, stdin, func(c chunk) bool {
						select {
						case j.out <- c:
							return true
						case <-ctx.Done():
							return false
						}
					}) {
						break
					}
				}
				close(j.out)
			}
		}()
	}
	go func() {
		defer close(order)
		defer close(jobs)
		for len(inputs) > 0 {
			// Small regular files go by jobFiles; anything else (a large file, a stream)
			// alone, so that its chunks do not wait behind others.
			k := 1
			for k < min(jobFiles, len(inputs)) && inputs[k-1].regular && inputs[k].regular {
				k++
			}
			out := make(chan chunk, max(2*k+2, 16))
			select {
			case order <- out:
			case <-ctx.Done():
				return
			}
			select {
			case jobs <- job{inputs[:k], out}:
			case <-ctx.Done():
				return
			}
			inputs = inputs[k:]
		}
	}()
	var err error
	for out := range order {
		for c := range out {
			if err == nil {
				err = r.consume(ctx, c)
				if err != nil {
					cancel()
				}
			}
		}
		if err != nil {
			break
		}
	}
	cancel()
	for range order { // let the dispatcher see the cancellation and stop
	}
	wg.Wait()
	return err
}
