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
