package replay

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
	"testing"
)

// countingReader counts the bytes read from it.
type countingReader struct {
	r io.Reader
	n int
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += n
	return n, err
}

// TestStopsReading: once the merge stops taking an input's records (a run that failed or
// was interrupted), its reader stops reading it, a stream of hundreds or one large input
// alike, instead of parsing the rest for nothing.
func TestStopsReading(t *testing.T) {
	line := `{"eventVersion":"1.08","userIdentity":{"type":"AWSService","invokedBy":"lambda.amazonaws.com"},"eventTime":"2026-03-01T00:00:00Z","eventSource":"sts.amazonaws.com","eventName":"AssumeRole","awsRegion":"eu-west-1","sourceIPAddress":"lambda.amazonaws.com","eventID":"e","recipientAccountId":"123456789012"}` + "\n"
	data := bytes.Repeat([]byte(line), 40000) // 12 MB
	for _, rd := range []reader{{workers: 1, chunk: 8, stream: true}, {workers: 1, chunk: 512}, {workers: 2, chunk: 512}} {
		in := &countingReader{r: bytes.NewReader(data)}
		sent := 0
		if rd.produceOne(input{path: "-"}, in, func(chunk) bool { sent++; return false }) {
			t.Fatal("produceOne went on after its caller stopped")
		}
		if sent != 1 || in.n > 2<<20 {
			t.Errorf("%+v: %d chunks sent, %d of %d bytes read after the caller stopped at the first", rd, sent, in.n, len(data))
		}
	}
}

// TestLargeFileBufferNotKept: the reader keeps its buffer from one small file to the next
// (a trail folder is tens of thousands), but not the head of a file too large to read
// whole, which it would hold, megabytes of it, until the run's end.
func TestLargeFileBufferNotKept(t *testing.T) {
	line := `{"eventVersion":"1.08","userIdentity":{"type":"AWSService","invokedBy":"lambda.amazonaws.com"},"eventTime":"2026-03-01T00:00:00Z","eventSource":"sts.amazonaws.com","eventName":"AssumeRole","awsRegion":"eu-west-1","sourceIPAddress":"lambda.amazonaws.com","eventID":"e","recipientAccountId":"123456789012"}` + "\n"
	dir := t.TempDir()
	rd := reader{workers: 1, chunk: 512} // one reader, file after file
	for _, tc := range []struct {
		lines   int
		maxKept int
	}{
		{lines: 100, maxKept: 64 << 10}, // read whole: its buffer is kept, as it was made
		{lines: 20000, maxKept: 0},      // 6 MB, past wholeFile: streamed, nothing kept
		{lines: 10, maxKept: 64 << 10},  // the next small file makes a small one again
	} {
		path := filepath.Join(dir, "f.ndjson")
		if err := os.WriteFile(path, bytes.Repeat([]byte(line), tc.lines), 0o600); err != nil {
			t.Fatal(err)
		}
		got := 0
		rd.produceOne(input{path: path, regular: true}, nil, func(c chunk) bool { got += len(c.recs); return true })
		if got != tc.lines {
			t.Errorf("%d lines: %d records", tc.lines, got)
		}
		if cap(rd.buf) > tc.maxKept {
			t.Errorf("%d lines: a buffer of %d bytes kept, want at most %d", tc.lines, cap(rd.buf), tc.maxKept)
		}
	}
}
