package cloudtrail

import (
	"bytes"
	"compress/gzip"
	"errors"
	"io"
	"iter"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// TestSharedBuffer: inputs read in turn through one small shared buffer, each cut off by
// the others at every read, give what each gives alone: gzipped and plain, lines longer
// than the buffer, a byte order mark, CRLF, a last line without its newline, and what is
// skipped.
func TestSharedBuffer(t *testing.T) {
	files, _ := filepath.Glob("testdata/datasets/*.ndjson.gz")
	if len(files) < 3 {
		t.Fatal("no datasets")
	}
	var inputs [][]byte
	for _, f := range files {
		gz, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		inputs = append(inputs, gz)
		zr, err := gzip.NewReader(bytes.NewReader(gz))
		if err != nil {
			t.Fatal(err)
		}
		plain, err := io.ReadAll(zr)
		if err != nil {
			t.Fatal(err)
		}
		inputs = append(inputs, plain)
	}
	line := `{"eventVersion":"1.08","userIdentity":{"type":"AWSService","invokedBy":"lambda.amazonaws.com"},"eventTime":"2026-03-01T00:00:00Z","eventSource":"sts.amazonaws.com","eventName":"AssumeRole","awsRegion":"eu-west-1","sourceIPAddress":"lambda.amazonaws.com","eventID":"EVENT","recipientAccountId":"123456789012","userAgent":"PAD"}`
	long := strings.Replace(line, "PAD", strings.Repeat("x", 10000), 1) // longer than the buffer
	inputs = append(inputs,
		[]byte("\xef\xbb\xbf"+line+"\r\n"+long+"\r\nnot json\n"+line),
		[]byte(`{"Records":[`+strings.Repeat(line+",", 40)+line+"]}\n"+long),
	)
	type result struct {
		recs []*Record
		bad  []string
	}
	read := func(in []byte, opt ReadOptions) result {
		var res result
		err := ReadWith(bytes.NewReader(in), opt, func(r *Record) { res.recs = append(res.recs, r) },
			func(err error) { res.bad = append(res.bad, Reason(err)) })
		if err != nil {
			t.Fatal(err)
		}
		return res
	}
	arena, shared := NewArena(), NewSharedBuffer(4<<10)
	got := make([]result, len(inputs))
	pulls := make([]func() (struct{}, bool), len(inputs))
	for i, in := range inputs {
		next, stop := iter.Pull(func(yield func(struct{}) bool) {
			got[i] = read(in, ReadOptions{Small: true, Arena: arena, Shared: shared, BeforeRead: func() bool { return yield(struct{}{}) }})
		})
		defer stop()
		pulls[i] = next
	}
	// Each input in turn, one read at a time.
	for open := len(inputs); open > 0; {
		open = 0
		for _, next := range pulls {
			if _, ok := next(); ok {
				open++
			}
		}
	}
	total := 0
	for i, in := range inputs {
		want := read(in, ReadOptions{Small: true})
		total += len(want.recs)
		if diff := cmp.Diff(want, got[i], cmp.AllowUnexported(result{}), cmp.Comparer(func(a, b netip.Addr) bool { return a == b })); diff != "" {
			t.Fatalf("input %d read beside the others through one buffer (-alone +shared):\n%s", i, diff)
		}
	}
	if total < 3000 {
		t.Fatalf("only %d records", total)
	}
}

// TestSharedBufferStops: BeforeRead saying no ends the reading with ErrStopped, with the
// records read so far handed on.
func TestSharedBufferStops(t *testing.T) {
	line := `{"eventTime":"2026-03-01T00:00:00Z","eventSource":"sts.amazonaws.com","eventName":"GetCallerIdentity","eventID":"e","recipientAccountId":"123456789012"}` + "\n"
	data := bytes.Repeat([]byte(line), 1000)
	for _, shared := range []*SharedBuffer{NewSharedBuffer(4 << 10), nil} {
		reads, n := 0, 0
		err := ReadWith(bytes.NewReader(data), ReadOptions{Small: true, Shared: shared, BeforeRead: func() bool { reads++; return reads < 3 }},
			func(*Record) { n++ }, func(error) {})
		if !errors.Is(err, ErrStopped) || n == 0 || n >= 1000 {
			t.Errorf("shared %v: %v after %d records of 1000", shared != nil, err, n)
		}
	}
}

// TestSharedBufferGzipMemory: hundreds of gzipped streams read side by side through a
// shared buffer hold each their inflater's state (a 32 KiB window) and a small buffer of
// compressed bytes beyond what a plain stream holds, not a buffer of inflated bytes too:
// 400 per-account files held 64 KiB more each, and a replay of them peaked at 174 MB.
func TestSharedBufferGzipMemory(t *testing.T) {
	if raceDetector {
		t.Skip("the race detector changes what is allocated")
	}
	// Blank lines: nothing parsed, nothing allocated for records; what is allocated is
	// the readers'.
	plain := bytes.Repeat([]byte("\n"), 300<<10) // more than any buffer
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write(plain)
	zw.Close()
	// perStream is what 100 streams of in, open side by side and read twice each,
	// allocate a stream.
	perStream := func(in []byte) uint64 {
		const streams = 100
		arena, shared := NewArena(), NewSharedBuffer(16<<10)
		var stops []func()
		defer func() {
			for _, stop := range stops {
				stop()
			}
		}()
		var before, after runtime.MemStats
		runtime.GC()
		runtime.GC() // the readers' pool emptied: each stream makes its own
		runtime.ReadMemStats(&before)
		for range streams {
			next, stop := iter.Pull(func(yield func(struct{}) bool) {
				ReadWith(bytes.NewReader(in), ReadOptions{Small: true, Arena: arena, Shared: shared, BeforeRead: func() bool { return yield(struct{}{}) }},
					func(*Record) {}, func(error) {})
			})
			stops = append(stops, stop)
			next()
			next()
		}
		runtime.ReadMemStats(&after)
		return (after.TotalAlloc - before.TotalAlloc) / streams
	}
	perStream(gz.Bytes()) // what is made once (the inflater's fixed tables) made here
	p, g := perStream(plain), perStream(gz.Bytes())
	t.Logf("a stream: %d bytes plain, %d gzipped", p, g)
	if g > p+56<<10 {
		t.Errorf("a gzipped stream read through a shared buffer allocates %d bytes more than a plain one, want at most 56 KiB (its inflater's state)", g-p)
	}
}
