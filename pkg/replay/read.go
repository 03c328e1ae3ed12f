package replay

import (
	"bytes"
	"container/heap"
	"context"
	"errors"
	"fmt"
	"io"
	"iter"
	"math"
	"os"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/outsider-sec/outsider/pkg/cloudtrail"
	"github.com/outsider-sec/outsider/pkg/flow"
)

// Inputs are read in chunks of records, and decided chunk by chunk, in input order: in
// turn, in one goroutine, or (--parallel N above 1) read, decompressed and parsed by N
// goroutines while the caller's decides, in the same order: the same findings either way.

// chunk is a part of one input, as a reading goroutine hands it on.
type chunk struct {
	file       string // the input's name, on its first chunk
	src        int    // the input's source (reorder.push): ties in time keep the inputs' order
	start      bool
	more       bool // the start of a later segment of a file (input.part): not another file
	recs       []*cloudtrail.Record
	bad        map[string]int // skipped values by reason: counted, not listed (a file of 20M bad lines is a few counters)
	readErr    error          // the input's read error, on its last chunk
	unreadable error          // the input could not be opened
	// A group's chunk (readGroups) carries the chunks its inputs gave, in the order it
	// read them, and high: every input of the group still open has read up to it.
	group []chunk
	high  int64
}

const chunkRecords = 512

// spareRecs holds chunks' emptied record lists (consume) for the next chunks: hundreds of
// streams hand on a read of ~15 records at a time, and each list grown from nothing cost
// five allocations (2% of a file per account's allocations, 1.6% of its bytes).
var spareRecs = make(chan []*cloudtrail.Record, 1024)

// newRecs returns an empty record list, a spare one when there is one.
func newRecs() []*cloudtrail.Record {
	select {
	case s := <-spareRecs:
		return s
	default:
		return nil
	}
}

// freeRecs keeps an emptied record list for newRecs.
func freeRecs(s []*cloudtrail.Record) {
	if cap(s) == 0 {
		return
	}
	clear(s)
	select {
	case spareRecs <- s[:0]:
	default:
	}
}

// wholeFile bounds the files read whole into memory (a trail's log files are kilobytes);
// larger ones are streamed.
const wholeFile = 4 << 20

// reader reads inputs; it keeps its buffer from one file to the next.
type reader struct {
	buf     []byte
	workers int                      // goroutines that parse the lines of a large input (0, 1: this one)
	chunk   int                      // records a chunk (0: chunkRecords)
	stream  bool                     // one of many inputs read side by side: never read whole, handed on a read at a time
	src     int                      // the source its chunks are from (chunk.src)
	arena   *cloudtrail.Arena        // shared by the inputs this goroutine reads in turn (nil: the reader's own)
	shared  *cloudtrail.SharedBuffer // the read buffer, shared as arena is (nil: the reader's own)
}

// produceOne reads one input into chunks; false when the caller stopped listening.
func (rd *reader) produceOne(in input, stdin io.Reader, send func(chunk) bool) bool {
	var r io.Reader = stdin
	workers := rd.workers // a small file is parsed in this goroutine: files are read side by side
	if in.path != "-" {
		if in.regular && !rd.stream {
			data, rest, err := rd.readHead(in)
			if err != nil {
				return send(chunk{file: in.path, src: rd.src, start: true, more: in.part > 0, unreadable: err})
			}
			if rest == nil {
				r, workers = bytes.NewReader(data), 1
			} else {
				defer rest.Close()
				r = io.MultiReader(bytes.NewReader(data), rest)
			}
		} else {
			if in.dir != nil {
				in.dir.done() // only a regular file is opened from its folder
			}
			var f io.ReadCloser
			var err error
			if in.segment() {
				f, err = in.openSegment()
			} else {
				f, err = os.Open(in.path)
			}
			if err != nil {
				return send(chunk{file: in.path, src: rd.src, start: true, more: in.part > 0, unreadable: err})
			}
			defer f.Close()
			r = f
		}
	}
	size := rd.chunk
	if size <= 0 {
		size = chunkRecords
	}
	c := chunk{file: in.path, src: rd.src, start: true, more: in.part > 0, recs: newRecs()}
	stopped := false
	hook := func() bool {
		if rd.stream && !stopped && len(c.recs) > 0 {
			// One of hundreds read side by side: its records are handed on as each read
			// of its buffer is parsed, before the next read. Parsed at once, a line is
			// read from the cache; handed on one at a time, each was parsed long after its
			// buffer was filled (hundreds of buffers in between), from memory, and every
			// record cost a switch to the merge and back. A file per account, one core:
			// 3.34-3.74 s against 3.57-3.82 s (fastest four of five interleaved runs
			// each), same findings.
			stopped = !send(c)
			c = chunk{file: in.path, src: rd.src, recs: newRecs()}
		}
		// Once the caller stopped listening (a run that failed, or was interrupted), the
		// rest of the input is not read: stopping hundreds of streams, or one large file,
		// would otherwise wait for every byte to be parsed for nothing.
		return !stopped
	}
	opt := cloudtrail.ReadOptions{Workers: workers, Small: rd.stream, Arena: rd.arena, Shared: rd.shared, BeforeRead: hook}
	err := cloudtrail.ReadWith(r, opt, func(rec *cloudtrail.Record) {
		if stopped {
			return
		}
		c.recs = append(c.recs, rec)
		// With a shared buffer, records are handed on only before a read (the hook): a
		// switch to another input in the middle of a buffer would let it overwrite the
		// lines still to parse.
		if len(c.recs) >= size && rd.shared == nil {
			stopped = !send(c)
			c = chunk{file: in.path, src: rd.src, recs: newRecs()}
		}
	}, func(err error) {
		if c.bad == nil {
			c.bad = map[string]int{}
		}
		c.bad[cloudtrail.Reason(err)]++
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
func (rd *reader) readHead(in input) ([]byte, io.ReadCloser, error) {
	f, err := in.open()
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
				// A large file: its head is read once, then streamed. The buffer is not
				// kept for the next file: held to the run's end, its 4 MiB were a fifth of
				// a dense replay's live heap, and the collector ran more often for it.
				rd.buf = nil
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

// consume takes a chunk of a stream: its records go into the reorder window (decided by
// merge once every stream has read past them), its skipped values are counted.
func (r *runner) consume(c chunk) {
	for _, g := range c.group {
		r.consume(g)
	}
	if c.start {
		if c.unreadable != nil {
			r.skipped(c.file, map[string]int{"unreadable-file": 1})
			fmt.Fprintf(r.stderr, "outsider replay: cannot read %s: %v\n", c.file, unwrapPath(c.unreadable))
			return
		}
		if !c.more {
			r.files++
		}
		r.current = c.file
	}
	r.skipped(c.file, c.bad)
	late := r.ro.late
	for _, rec := range c.recs {
		r.read++
		r.ro.push(rec, c.src)
	}
	if r.ro.late > late && len(r.lateFiles) < badFilesShown && !slices.Contains(r.lateFiles, c.file) {
		r.lateFiles = append(r.lateFiles, c.file)
	}
	freeRecs(c.recs)
	if c.readErr != nil {
		r.skipped(c.file, map[string]int{"unreadable-file": 1})
		fmt.Fprintf(r.stderr, "outsider replay: %s: %v\n", c.file, c.readErr)
	}
}

// skipped counts a file's skipped values into the summary, and names the first few files
// of each reason.
func (r *runner) skipped(file string, bad map[string]int) {
	if len(bad) == 0 {
		return
	}
	r.sum.Add(flow.Summary{Malformed: bad})
	if file == "-" {
		file = "stdin"
	}
	for reason := range bad {
		if r.badFiles == nil {
			r.badFiles = map[string][]string{}
		}
		if fs := r.badFiles[reason]; len(fs) < badFilesShown && !slices.Contains(fs, file) {
			r.badFiles[reason] = append(fs, file)
		}
	}
}

// stream is one source of records in event-time order give or take the reorder window:
// the trail folder's CloudTrail-named files (in the order of the time in their names), or
// one other input (an NDJSON file, envelopes, stdin). Streams are merged by event time.
type stream struct {
	next func() (chunk, bool) // its next chunk; false once it ended
	high int64                // the newest eventTime read from it, Unix nanoseconds
}

// fromChan is a stream read by a goroutine of its own.
func fromChan(ch <-chan chunk) *stream {
	return &stream{next: func() (chunk, bool) { c, ok := <-ch; return c, ok }}
}

// manyStreams: more inputs than this, read side by side, are read with small buffers,
// handed on a read at a time (see reader.stream).
const manyStreams = 8

// sharedBufferSize is the read buffer of the streams one goroutine reads in turn: what
// each read brings in is held as records until decided (see cloudtrail.SharedBuffer).
const sharedBufferSize = 16 << 10

// sharedBufferFor is the read buffer of n streams read side by side: sharedBufferSize up
// to 400 of them, and less past that, down to minSharedBuffer, so that what they hold
// stays nearer what 400 hold. 3,000 per-account files each held ~11 KB of records from
// its last 16 KiB read, 34 MB between them, which had the collector run without pause.
func sharedBufferFor(n int) int {
	if n <= 400 {
		return sharedBufferSize
	}
	return max(minSharedBuffer, sharedBufferSize*400/n)
}

// minSharedBuffer holds a whole line of nearly every real record: of the 7,584 records of
// the six public datasets the largest is 7.8 KB, and 0.7% are over 4 KiB. A longer line is
// put together in its stream's own buffer, which then stays that large: at 4 KiB, 3,000
// streams could keep 24 MB of them. (3,000 files: 4.2-4.3 s and 155 MB, against 4.5 s and
// 148 MB at 4 KiB, in the same hour.)
const minSharedBuffer = 8 << 10

// splitInputs separates CloudTrail-named files and day folders (one stream, in the order
// of their times) from the other inputs (a stream each).
func splitInputs(inputs []input) (named, plain []input) {
	for _, in := range inputs {
		if in.t.IsZero() {
			plain = append(plain, in)
		} else {
			named = append(named, in)
		}
	}
	return named, plain
}

// jobFiles is how many small files one reader takes at a time from the trail stream.
const jobFiles = 32

// merge merges every input by event time: CloudTrail-named files form one stream in the
// order of their names' times, and every other input is a stream of its own (one file per
// account given one after another is the common case). The merge always reads from the
// stream that is furthest behind, and decides a record once every stream still open has
// read past its time by the reorder window: memory holds the window and one chunk a
// stream, whatever the inputs' lengths. n goroutines read and parse the trail's files side
// by side; each other input has a goroutine of its own, or, past manyStreams of them, is a
// coroutine of the merge (n = 1) or of one of n goroutines that read groups of them
// (readGroups).
func (r *runner) merge(ctx context.Context, inputs []input, stdin io.Reader, n int) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	named, plain := splitInputs(inputs)
	held := &heldDirs{}   // day folders listed and kept open for their files
	defer held.closeAll() // runs last: the files of a run that stopped early are never opened
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel() // runs first: every goroutine stops sending
	var streams []*stream
	if len(named) > 0 {
		streams = append(streams, fromChan(ordered(ctx, &wg, named, stdin, n, &r.dayDigests, held)))
	}
	// Past manyStreams inputs, each hands on what one read of its small buffer held and
	// reads no further until the merge takes it (see reader.stream).
	if len(plain) > manyStreams {
		chains := chained(numbered(plain, 1))
		if n == 1 {
			// Read in turn (--parallel 1): each stream is a coroutine the merge resumes
			// when it wants its next records, a switch far cheaper than a channel's
			// hand-over through the scheduler.
			cs, stop := coStreams(chains, stdin, sharedBufferFor(len(chains)))
			defer stop()
			streams = append(streams, cs...)
		} else {
			streams = append(streams, readGroups(ctx, &wg, chains, stdin, n)...)
		}
		plain = nil
	}
	// A few streams read side by side: smaller chunks keep their sum bounded.
	per := min(max(8, chunkRecords*4/max(1, len(plain))), chunkRecords)
	for i, in := range plain {
		workers := 1
		if len(plain) == 1 {
			workers = n // one large input: its lines parsed by every core
		}
		rd := reader{workers: workers, chunk: per, src: 1 + i}
		streams = append(streams, goStream(ctx, &wg, func(send func(chunk) bool) { rd.produceOne(in, stdin, send) }))
	}
	// What is left in the reorder window when every stream ended, drain decides.
	return mergeStreams(streams, r.consume, func(low int64) error {
		// Every open stream has read up to low: what is older by the window is final.
		for {
			rec, ok := r.ro.readyBelow(low)
			if !ok {
				return nil
			}
			if err := r.process(ctx, rec); err != nil {
				return err
			}
		}
	})
}

// mergeStreams reads every stream's chunks into take: each stream gives its first chunk
// (or ends), in turn; then the stream furthest behind is read next, which a heap of the
// open streams by their newest time keeps on top (hundreds of per-account streams handing
// on a record at a time made a scan of them all per record most of the merge's time).
// Before each read, every open stream has read up to low (at): an error from at stops it.
func mergeStreams(streams []*stream, take func(chunk), at func(low int64) error) error {
	open := make(streamHeap, 0, len(streams))
	for _, s := range streams {
		c, ok := s.next()
		if !ok {
			continue // ended before its first chunk
		}
		s.take(c)
		take(c)
		open = append(open, s)
	}
	heap.Init(&open)
	for len(open) > 0 {
		if err := at(open[0].high); err != nil {
			return err
		}
		s := open[0]
		c, ok := s.next()
		if !ok {
			heap.Pop(&open) // ended
			continue
		}
		s.take(c)
		take(c)
		heap.Fix(&open, 0)
	}
	return nil
}

// take notes a chunk's newest time (a group's: its watermark).
func (s *stream) take(c chunk) {
	if c.group != nil {
		s.high = c.high
		return
	}
	for _, rec := range c.recs {
		s.high = max(s.high, rec.Time.UnixNano())
	}
}

// coStreams makes each chain of inputs (chained) a stream read by a coroutine of the
// goroutine that pulls them, its files one after another, all sharing one arena; each
// input's records are of its own src. Files of hundreds of accounts merged side by side:
// each holds a read buffer, not its whole file.
func coStreams(chains [][]input, stdin io.Reader, bufSize int) ([]*stream, func()) {
	arena, shared := cloudtrail.NewArena(), cloudtrail.NewSharedBuffer(bufSize)
	streams := make([]*stream, 0, len(chains))
	var stops []func()
	for _, chain := range chains {
		rd := reader{workers: 1, chunk: chunkRecords, stream: true, arena: arena, shared: shared}
		next, stop := iter.Pull(func(yield func(chunk) bool) {
			for _, in := range chain {
				rd.src = in.src
				if !rd.produceOne(in, stdin, yield) {
					return
				}
			}
		})
		streams = append(streams, &stream{next: next})
		stops = append(stops, stop)
	}
	return streams, func() {
		for _, stop := range stops {
			stop()
		}
	}
}

// readGroups reads hundreds of inputs (--parallel n above 1) in n groups, each a goroutine
// that merges its inputs as the merge does (coroutines, the one furthest behind read next)
// and hands on what they gave a few hundred records at a time, with its watermark: a
// stream to the merge. A goroutine an input cost each record a hand-over through the
// scheduler, and each input an arena of its own.
func readGroups(ctx context.Context, wg *sync.WaitGroup, chains [][]input, stdin io.Reader, n int) []*stream {
	var streams []*stream
	for g := range n {
		from, to := g*len(chains)/n, (g+1)*len(chains)/n
		streams = append(streams, goStream(ctx, wg, func(send func(chunk) bool) {
			readGroup(chains[from:to], stdin, sharedBufferFor(len(chains)), send)
		}))
	}
	return streams
}

// goStream runs produce in a goroutine of its own: what it sends is a stream the merge
// reads, until ctx ends.
func goStream(ctx context.Context, wg *sync.WaitGroup, produce func(send func(chunk) bool)) *stream {
	ch := make(chan chunk, 1)
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer close(ch)
		produce(func(c chunk) bool {
			select {
			case ch <- c:
				return true
			case <-ctx.Done():
				return false
			}
		})
	}()
	return fromChan(ch)
}

// errStopped ends a group's merge (readGroup) once nobody takes what it sends.
var errStopped = errors.New("the replay stopped")

// readGroup merges its chains' chunks in the order the merge would read them, and sends
// them on in groups of about chunkRecords records.
func readGroup(chains [][]input, stdin io.Reader, bufSize int, send func(chunk) bool) {
	streams, stop := coStreams(chains, stdin, bufSize)
	defer stop()
	var out chunk
	held := 0
	err := mergeStreams(streams, func(c chunk) {
		out.group = append(out.group, c)
		held += len(c.recs)
	}, func(low int64) error {
		if held < chunkRecords {
			return nil
		}
		out.high = low
		if !send(out) {
			return errStopped
		}
		out, held = chunk{}, 0
		return nil
	})
	if err != nil {
		return
	}
	if out.group != nil {
		out.high = math.MaxInt64 // every input ended
		send(out)
	}
}

// streamHeap orders open streams by their newest time read, the one furthest behind first.
type streamHeap []*stream

func (h streamHeap) Len() int           { return len(h) }
func (h streamHeap) Less(i, j int) bool { return h[i].high < h[j].high }
func (h streamHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *streamHeap) Push(x any)        { *h = append(*h, x.(*stream)) }
func (h *streamHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}

// ordered reads inputs with n readers side by side and hands their chunks on in input
// order. Day folders are listed as their day comes, all those of a day together: their
// files take their place, in time order; the digest files they hold are counted in
// digests.
func ordered(ctx context.Context, wg *sync.WaitGroup, inputs []input, stdin io.Reader, n int, digests *atomic.Int64, held *heldDirs) <-chan chunk {
	jobs := make(chan job)
	order := make(chan chan chunk, 4*n)
	out := make(chan chunk, 1)
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rd := reader{workers: n, chunk: chunkRecords}
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
	// A day's folders are listed a day ahead, by a goroutine of their own: listing one
	// (an organisation's hundreds of folders, a system call or three each) while the
	// readers wait for files left them idle at every day's start.
	days := make(chan []input, 1)
	wg.Add(3)
	go func() {
		defer wg.Done()
		defer close(days)
		for len(inputs) > 0 {
			k := 1
			var next []input
			if inputs[0].day {
				for k < len(inputs) && inputs[k].day && inputs[k].t.Equal(inputs[0].t) {
					k++
				}
				var d int
				next, d = listDays(inputs[:k], held)
				digests.Add(int64(d))
			} else {
				for k < len(inputs) && !inputs[k].day {
					k++
				}
				next = inputs[:k]
			}
			inputs = inputs[k:]
			select {
			case days <- next:
			case <-ctx.Done():
				return
			}
		}
	}()
	go func() {
		defer wg.Done()
		defer close(order)
		defer close(jobs)
		for pending := range days {
			for len(pending) > 0 {
				if ordered1(ctx, &pending, jobs, order) {
					for range days { // let the lister finish
					}
					return
				}
			}
		}
	}()
	go func() {
		defer wg.Done()
		defer close(out)
		for ch := range order {
			for c := range ch {
				select {
				case out <- c:
				case <-ctx.Done():
					for range ch { // let its reader finish
					}
				}
			}
		}
	}()
	return out
}

// job is a few inputs one reader reads in turn, its chunks handed on through out.
type job struct {
	ins []input
	out chan chunk
}

// ordered1 hands the next job of *src (up to jobFiles small regular files, or one other
// input) to the readers; done when ctx ended.
func ordered1(ctx context.Context, src *[]input, jobs chan<- job, order chan<- chan chunk) (done bool) {
	inputs := *src
	k := 1
	for k < min(jobFiles, len(inputs)) && inputs[k-1].regular && inputs[k].regular && !inputs[k].day {
		k++
	}
	ch := make(chan chunk, max(2*k+2, 16))
	select {
	case order <- ch:
	case <-ctx.Done():
		return true
	}
	select {
	case jobs <- job{inputs[:k], ch}:
	case <-ctx.Done():
		return true
	}
	*src = inputs[k:]
	return false
}
