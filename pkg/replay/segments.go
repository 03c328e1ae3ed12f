package replay

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"encoding/json"
	"errors"
	"io"
	"os"
	"slices"
	"sync"
	"time"

	"github.com/outsider-sec/outsider/pkg/cloudtrail"
)

// A file of NDJSON may hold several histories one after another: the exports of many
// accounts concatenated (cat */*.ndjson), each starting over in time. Read as one stream,
// each history after the first would come weeks behind what was already decided, and be
// decided as it came: a theft in a hub account decided before the trail of the function's
// own account was read, so never a finding (400 accounts' histories in one file: 837
// findings where the same records, sorted, give 973). So a plain file whose event time goes
// back by more than the reorder window is read as segments, each from where it went back,
// and the segments are merged by event time as files of their own are (DESIGN §5a).
//
// Finding where: a few lines at evenly spaced offsets first (a file in order costs a few
// reads), and only when they go back, every line's eventTime, read without parsing it
// (cloudtrail.EventTime).

// maxSegments bounds the segments of one file: each is a stream read side by side (an open
// file and a read's worth of records held). Past it, the file is read as one stream.
const maxSegments = 512

// segmentStride is the spacing of the lines sampled (goesBack): one per MiB, at least four,
// at most maxSamples, and the file's last line. Each is a read at random, which a cold
// disk pays in seeks: 400 files of a megabyte are five reads each. A history shorter than
// the stride may fall between two samples; the others still show that the file goes back,
// and every line is then read. A file whose only history out of order is that short is
// read as one stream, and the summary says how many records came late (reorder.late).
const (
	segmentStride = 1 << 20
	maxSamples    = 1024
)

// segmentsOf returns where a file's event time goes back by more than window: the start
// of each segment after the first (nil: one stream). Gzipped files are not segmented (a
// segment cannot be read without inflating what precedes it). too is true when the file
// has more than limit segments: it is then read as one stream.
// A file that is not cut has its span: from its first line's eventTime to a time none of its
// records is after (chained).
func segmentsOf(path string, window time.Duration, limit int) (starts []int64, too bool, sp span, err error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, false, span{}, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil || !st.Mode().IsRegular() || st.Size() == 0 {
		return nil, false, span{}, err
	}
	size := st.Size()
	head := make([]byte, 16<<10)
	n, err := f.ReadAt(head, 0)
	if err != nil && err != io.EOF {
		return nil, false, span{}, err
	}
	if n >= 2 && head[0] == 0x1f && head[1] == 0x8b {
		return nil, false, span{}, nil
	}
	// Only NDJSON is cut: a JSON document (a log file, an array), pretty-printed over
	// many lines, is one value, read whole.
	first := bytes.TrimLeft(head[:n], " \t\r\n\ufeff")
	if j := bytes.IndexByte(first, '\n'); j >= 0 {
		first = first[:j]
	} else if int64(n) < size {
		return nil, false, span{}, nil // a first line longer than the head: not looked into
	}
	if !json.Valid(bytes.TrimSpace(first)) {
		return nil, false, span{}, nil
	}
	back, sp := goesBack(f, size, head[:4<<10], int64(window))
	if !back {
		return nil, false, sp, nil
	}
	starts, err = scanSegments(f, int64(window), limit)
	if errors.Is(err, errTooMany) {
		return nil, true, span{}, nil
	}
	return starts, false, span{}, err
}

// span is when a file's records are: none before from less the reorder window (its first
// line's eventTime: the file does not go back by more), none after to. Zero: not known.
type span struct{ from, to int64 }

func (s span) known() bool { return s.from != 0 && s.to != 0 }

// goesBack reads a line at evenly spaced offsets, and the last, len(buf) bytes at each:
// true when one's eventTime is more than window behind the newest of those before it.
// Otherwise, sp is the file's span when its first and last lines were read: its last
// line is less than window behind the newest record, so none is after it by more.
func goesBack(f *os.File, size int64, buf []byte, window int64) (back bool, sp span) {
	k := min(max(size/segmentStride, 4), maxSamples)
	var high, firstT, lastT int64
	seen := false
	for i := range k + 1 {
		off := i * size / k
		last := i == k
		if last {
			off = max(size-int64(len(buf)), 0)
		}
		n, err := f.ReadAt(buf, off)
		if err != nil && err != io.EOF {
			return false, span{}
		}
		b := bytes.TrimRight(buf[:n], "\n")
		switch {
		case last:
			b = b[bytes.LastIndexByte(b, '\n')+1:] // the last line (whole, if it fits)
		case off > 0:
			// The first whole line after the offset.
			j := bytes.IndexByte(b, '\n')
			if j < 0 {
				continue
			}
			b = b[j+1:]
		}
		if j := bytes.IndexByte(b, '\n'); j >= 0 {
			b = b[:j]
		}
		if !wholeObject(b) {
			continue
		}
		t, ok := cloudtrail.EventTime(b)
		if !ok {
			continue
		}
		ns := t.UnixNano()
		if seen && ns < high-window {
			return true, span{}
		}
		if i == 0 {
			firstT = ns
		}
		if last {
			lastT = ns
		}
		high, seen = max(high, ns), true
	}
	if firstT == 0 || lastT == 0 {
		return false, span{}
	}
	return false, span{from: firstT, to: max(high, lastT+window)}
}

var errTooMany = errors.New("too many segments")

// wholeObject: a line that reads as one JSON object of its own, as a segment's first line
// must (its content is the parser's to judge).
func wholeObject(line []byte) bool {
	line = bytes.TrimSpace(line)
	return len(line) >= 2 && line[0] == '{' && line[len(line)-1] == '}'
}

// scanSegments reads every line of f: a segment starts at each line whose eventTime is more
// than window behind the newest of its segment so far. Lines without one (as
// cloudtrail.EventTime reads it) stay where they are.
func scanSegments(f *os.File, window int64, limit int) ([]int64, error) {
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return nil, err
	}
	var starts []int64
	buf := make([]byte, 1<<20)
	var (
		pos   int64 // the file offset of buf[0]
		held  int   // bytes of buf holding a line not yet ended
		high  int64
		begun bool
		tail  bool // the first line in buf is the end of one longer than buf: not read
	)
	for {
		n, err := f.Read(buf[held:])
		end := held + n
		b := buf[:end]
		at := 0
		for {
			j := bytes.IndexByte(b[at:], '\n')
			if j < 0 {
				break
			}
			line := b[at : at+j]
			if tail {
				tail = false
			} else if t, ok := cloudtrail.EventTime(line); ok && wholeObject(line) {
				ns := t.UnixNano()
				switch {
				case !begun:
					high, begun = ns, true
				case ns < high-window:
					if len(starts)+1 >= limit {
						return nil, errTooMany
					}
					starts = append(starts, pos+int64(at))
					high = ns
				default:
					high = max(high, ns)
				}
			}
			at += j + 1
		}
		if err == io.EOF || n == 0 && err == nil {
			break // a last line without its newline starts no segment worth one
		}
		if err != nil {
			return nil, err
		}
		// The unended line moves to the front; a line longer than the buffer is skipped
		// (the reader refuses it too).
		rest := end - at
		if rest == len(buf) {
			pos += int64(end)
			held, tail = 0, true
			continue
		}
		copy(buf, buf[at:end])
		pos += int64(at)
		held = rest
	}
	return starts, nil
}

// segmented replaces each plain, regular, uncompressed input whose event time goes back by
// more than window with its segments (segmentsOf), each a stream of its own; room is how
// many streams the open-file limit allows in all. say tells of a file left whole. A window
// of zero asks for the input's order: nothing is segmented.
func segmented(inputs []input, window time.Duration, room int, say func(format string, a ...any)) []input {
	if window == 0 {
		return inputs // --reorder-window 0s: decided as read, whatever the order
	}
	streams := 0
	for _, in := range inputs {
		if in.t.IsZero() {
			streams++
		}
	}
	var out []input
	for _, in := range inputs {
		if !in.plainFile() {
			out = append(out, in)
			continue
		}
		limit := min(maxSegments, room-streams+1)
		starts, too, sp, err := segmentsOf(in.path, window, max(limit, 1))
		in.span = sp
		switch {
		case err != nil:
			// Read as one stream: the reading says what is wrong with it.
		case too:
			say("%s goes back in event time more than %d times: read as one stream, its records more than the reorder window behind decided as they come (give each history as a file of its own, or sort it)", in.path, limit-1)
		case len(starts) > 0:
			from := int64(0)
			for k, at := range append(starts, 0) {
				seg := in
				seg.off, seg.end, seg.part = from, at, k
				out = append(out, seg)
				from = at
			}
			streams += len(starts)
			continue
		}
		out = append(out, in)
	}
	return out
}

// maxSpanned bounds what a gzipped file is inflated to for its span: past it (a bomb, or
// an export of gigabytes), it is a stream of its own.
const maxSpanned = 1 << 30

// spanGzipped gives the gzipped plain inputs their spans (segmentsOf gives none: a
// gzipped file's last line is read only by inflating all of it), so that those that follow
// one another are chained. Inflating each once more is paid only when the files read side
// by side would not fit the open-file limit: a folder of gzipped daily exports per
// account, refused otherwise. A file that goes back by more than window has none.
// n goroutines inflate side by side.
func spanGzipped(inputs []input, window time.Duration, n int) []input {
	out := slices.Clone(inputs)
	next := make(chan int)
	var wg sync.WaitGroup
	for range max(n, 1) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				out[i].span = gzipSpan(out[i].path, int64(window))
			}
		}()
	}
	for i, in := range out {
		if !in.plainFile() || in.segment() || in.span.known() {
			continue
		}
		next <- i
	}
	close(next)
	wg.Wait()
	return out
}

func gzipSpan(path string, window int64) span {
	f, err := os.Open(path)
	if err != nil {
		return span{}
	}
	defer f.Close()
	br := bufio.NewReaderSize(f, 64<<10)
	if magic, _ := br.Peek(2); len(magic) < 2 || magic[0] != 0x1f || magic[1] != 0x8b {
		return span{}
	}
	zr, err := gzip.NewReader(br)
	if err != nil {
		return span{}
	}
	defer zr.Close()
	lines := bufio.NewReaderSize(io.LimitReader(zr, maxSpanned), 1<<20)
	var first, high int64
	long := false // the line read is the rest of one longer than the buffer
	for {
		line, err := lines.ReadSlice('\n')
		if err == bufio.ErrBufferFull {
			long = true
			continue
		}
		if !long {
			if t, ok := cloudtrail.EventTime(line); ok && wholeObject(line) {
				ns := t.UnixNano()
				switch {
				case first == 0:
					first, high = ns, ns
				case ns < high-window:
					return span{} // goes back: a stream of its own
				default:
					high = max(high, ns)
				}
			}
		}
		long = false
		if err == io.EOF {
			break
		}
		if err != nil {
			return span{} // a corrupt or cut file: the reading says so
		}
	}
	if first == 0 {
		return span{}
	}
	return span{from: first, to: high}
}
