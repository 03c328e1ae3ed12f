package replay

import (
	"bytes"
	"io"
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
