package replay

import (
	"bytes"
	"errors"
	"fmt"
	"testing"
)

// TestWriteBehindOrder: jobs run in the order they were asked for; once one fails, no later
// one runs (no finding printed after a commit that failed), and the error comes back.
func TestWriteBehindOrder(t *testing.T) {
	w := newWriteBehind()
	var ran []int
	boom := errors.New("disk full")
	for i := range 10 {
		w.do(func() error {
			ran = append(ran, i)
			if i == 6 {
				return boom
			}
			return nil
		})
	}
	if err := w.close(); !errors.Is(err, boom) {
		t.Errorf("close: %v, want %v", err, boom)
	}
	if err := w.close(); !errors.Is(err, boom) {
		t.Errorf("close again: %v, want %v", err, boom)
	}
	if fmt.Sprint(ran) != "[0 1 2 3 4 5 6]" {
		t.Errorf("ran %v, want 0 to 6 in order", ran)
	}
	if err := w.do(func() error { t.Error("a job ran after a failure"); return nil }); !errors.Is(err, boom) {
		t.Errorf("do after the failure: %v, want %v", err, boom)
	}
}

// failingWriter takes n bytes, then fails.
type failingWriter struct {
	n   int
	buf bytes.Buffer
}

func (f *failingWriter) Write(p []byte) (int, error) {
	if f.buf.Len()+len(p) > f.n {
		return 0, errors.New("no space left on device")
	}
	return f.buf.Write(p)
}

// TestOutputFails: findings that cannot be written end the run with an error, the
// findings written behind the decisions as those written in turn.
func TestOutputFails(t *testing.T) {
	for _, parallel := range []string{"1", "2"} {
		t.Run("parallel "+parallel, func(t *testing.T) {
			var stderr bytes.Buffer
			out := &failingWriter{n: 100}
			code := Main([]string{"--fresh", "--state", t.TempDir(), "--progress", "0", "--format", "json", "--parallel", parallel, "../../events"}, nil, out, &stderr)
			if code != ExitError {
				t.Errorf("exit %d, want %d: %s", code, ExitError, stderr.String())
			}
			if !bytes.Contains(stderr.Bytes(), []byte("no space left on device")) {
				t.Errorf("the write's error is not told: %s", stderr.String())
			}
		})
	}
}
