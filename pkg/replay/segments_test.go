package replay

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/outsider-sec/outsider/internal/gen"
)

// line is a record of the given time, as CloudTrail writes one.
func segLine(t time.Time, pad int) string {
	return fmt.Sprintf(`{"eventVersion":"1.08","userIdentity":{"type":"AssumedRole"},"eventTime":"%s","eventSource":"s3.amazonaws.com","eventName":"ListBuckets","awsRegion":"us-east-1","sourceIPAddress":"198.51.100.7","requestParameters":{"x":"%s"},"recipientAccountId":"111122223333"}`+"\n",
		t.UTC().Format(time.RFC3339), strings.Repeat("a", pad))
}

func writeSeg(t *testing.T, data []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "h.ndjson")
	if err := os.WriteFile(p, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestSegmentsOf: a file is cut where its event time goes back by more than the window,
// at the first byte of that line, and only there.
func TestSegmentsOf(t *testing.T) {
	base := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	history := func(n int, jitter bool) string {
		var b strings.Builder
		for i := range n {
			at := base.Add(time.Duration(i) * 7 * time.Minute)
			if jitter && i%3 == 1 {
				at = at.Add(-20 * time.Minute) // behind, within the window
			}
			b.WriteString(segLine(at, i%50))
		}
		return b.String()
	}
	one := history(3000, true)
	starts, too, sp, err := segmentsOf(writeSeg(t, []byte(one)), 30*time.Minute, maxSegments)
	if err != nil || too || starts != nil {
		t.Fatalf("one history in order (within the window): %v %v %v, want no segments", starts, too, err)
	}
	// Its span: from its first line, to its last line and the window (nothing is after).
	last := base.Add(2999 * 7 * time.Minute)
	if want := (span{base.UnixNano(), last.Add(30 * time.Minute).UnixNano()}); sp != want {
		t.Fatalf("one history's span %v, want %v", sp, want)
	}
	// Three histories one after another: cut at the second's and the third's first lines.
	three := one + history(2000, false) + history(2500, true)
	want := []int64{int64(len(one)), int64(len(one) + len(history(2000, false)))}
	starts, too, sp, err = segmentsOf(writeSeg(t, []byte(three)), 30*time.Minute, maxSegments)
	if err != nil || too || !slices.Equal(starts, want) || sp.known() {
		t.Fatalf("three histories: %v %v %v, want %v", starts, too, err, want)
	}
	// Past the limit: read as one stream.
	if starts, too, _, err := segmentsOf(writeSeg(t, []byte(three)), 30*time.Minute, 2); err != nil || !too || starts != nil {
		t.Fatalf("three histories, two segments allowed: %v %v %v, want too many", starts, too, err)
	}
	// A line longer than the scan's buffer: what its end holds is not read as a line.
	var long bytes.Buffer
	long.WriteString(one)
	long.WriteString(`{"x":"` + strings.Repeat("b", 1<<20) + `","eventTime":"2001-01-01T00:00:00Z"}` + "\n")
	long.WriteString(history(100, false)) // from base: behind the end of one
	starts, too, _, err = segmentsOf(writeSeg(t, long.Bytes()), 30*time.Minute, maxSegments)
	if err != nil || too || !slices.Equal(starts, []int64{int64(len(one) + len(`{"x":"`) + 1<<20 + len(`","eventTime":"2001-01-01T00:00:00Z"}`) + 1)}) {
		t.Fatalf("a long line between two histories: %v %v %v, want one cut after it", starts, too, err)
	}
	// A JSON document is one value, never cut: an array of one record a line, and a log
	// file, whose time goes back as much.
	array := "[\n" + strings.ReplaceAll(strings.TrimSuffix(three, "\n"), "}\n{", "},\n{") + "\n]\n"
	logFile := `{"Records": [` + "\n" + strings.ReplaceAll(strings.TrimSuffix(three, "\n"), "}\n{", "},\n{") + "\n]}\n"
	for name, doc := range map[string]string{"an array": array, "a log file": logFile} {
		if starts, too, _, err := segmentsOf(writeSeg(t, []byte(doc)), 30*time.Minute, maxSegments); err != nil || too || starts != nil {
			t.Fatalf("%s: %v %v %v, want no segments", name, starts, too, err)
		}
	}
	// Gzipped: never cut (a segment could not be read without what precedes it).
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write([]byte(three))
	zw.Close()
	if starts, too, _, err := segmentsOf(writeSeg(t, gz.Bytes()), 30*time.Minute, maxSegments); err != nil || too || starts != nil {
		t.Fatalf("gzipped: %v %v %v, want no segments", starts, too, err)
	}
}

// TestSegmentedReplay: the segments of a file are read as streams of their own, merged by
// event time, and the file counts once: its records decided in time order, as if sorted.
func TestSegmentedReplay(t *testing.T) {
	base := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	var data []byte
	for h := range 3 {
		for i := range 1500 {
			data = append(data, segLine(base.Add(time.Duration(i*3+h)*time.Hour), 0)...)
		}
	}
	p := writeSeg(t, data)
	ins := segmented([]input{{path: p, regular: true}}, 30*time.Minute, 1<<30, func(string, ...any) { t.Fatal("said something") })
	if len(ins) != 3 || ins[0].off != 0 || ins[1].off == 0 || ins[2].end != 0 || ins[1].end != ins[2].off || ins[2].part != 2 {
		t.Fatalf("segments %+v", ins)
	}
	var stdout, stderr bytes.Buffer
	if code := Main([]string{"--fresh", "--state", t.TempDir(), "--format", "json", "--progress", "0", "--parallel", "1", p}, nil, &stdout, &stderr); code != ExitOK {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	if !strings.Contains(stderr.String(), "1 files, 4500 records read") {
		t.Fatalf("summary: %s", stderr.String())
	}
	if strings.Contains(stderr.String(), "came more than the reorder window") {
		t.Fatalf("segmented, yet records came late: %s", stderr.String())
	}
	// Gzipped, it is one stream: its later histories come late, and the summary says so.
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write(data)
	zw.Close()
	pz := filepath.Join(t.TempDir(), "h.ndjson.gz")
	if err := os.WriteFile(pz, gz.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	stderr.Reset()
	if code := Main([]string{"--fresh", "--state", t.TempDir(), "--format", "json", "--progress", "0", "--parallel", "1", pz}, nil, &stdout, &stderr); code != ExitOK {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	if !strings.Contains(stderr.String(), " records came more than the reorder window (30m0s) behind records already decided (in "+pz+")") {
		t.Fatalf("gzipped, no word of the late records and where: %s", stderr.String())
	}
	if !strings.Contains(stderr.String(), "write it to a plain file (gunzip it)") {
		t.Fatalf("gzipped, no word of how to give it: %s", stderr.String())
	}
	// Too many segments for the room: one stream, and said.
	said := ""
	ins = segmented([]input{{path: p, regular: true}}, 30*time.Minute, 2, func(f string, a ...any) { said = fmt.Sprintf(f, a...) })
	if len(ins) != 1 || ins[0].end != 0 || !strings.Contains(said, "read as one stream") {
		t.Fatalf("no room: %+v, %q", ins, said)
	}
}

// TestDocumentsInOrder: a document is parsed whole, and its records are decided in event-time
// order whatever its own: a dense history written newest first as lookup-events output, as a
// JSON array (a record a line) and as one log file concludes what the records in order do.
func TestDocumentsInOrder(t *testing.T) {
	cfg := gen.Dense(16000)
	cfg.Seed, cfg.Accounts, cfg.Hubs, cfg.Days = 1, 24, 3, 40
	var lines [][]byte
	if _, err := gen.WriteDense(cfg, func(_ string, line []byte) error {
		lines = append(lines, bytes.TrimSpace(bytes.Clone(line)))
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	var nd bytes.Buffer
	for _, l := range lines {
		nd.Write(l)
		nd.WriteByte('\n')
	}
	sorted := writeSeg(t, nd.Bytes())
	newest := slices.Clone(lines)
	slices.Reverse(newest)
	array := writeSeg(t, append(append([]byte("[\n"), bytes.Join(newest, []byte(",\n"))...), "\n]\n"...))
	logFile := writeSeg(t, append(append([]byte(`{"Records":[`), bytes.Join(newest, []byte(","))...), "]}\n"...))
	requireChained(t, sorted)
	// What `aws cloudtrail lookup-events` prints: newest first, each record a JSON string.
	type event struct{ CloudTrailEvent string }
	events := make([]event, len(newest))
	for i, l := range newest {
		events[i] = event{string(l)}
	}
	doc, err := json.MarshalIndent(map[string]any{"Events": events}, "", "    ")
	if err != nil {
		t.Fatal(err)
	}
	lookup := writeSeg(t, doc)
	want := replayWith(t, []string{"--parallel", "1"}, []string{sorted})
	sameOutcome(t, "lookup-events output", want, replayWith(t, []string{"--parallel", "1"}, []string{lookup}))
	sameOutcome(t, "a JSON array, newest first", want, replayWith(t, []string{"--parallel", "1"}, []string{array}))
	sameOutcome(t, "a log file, newest first", want, replayWith(t, []string{"--parallel", "1"}, []string{logFile}))
	sameOutcome(t, "a log file, newest first, every core", want, replayWith(t, []string{"--parallel", "2"}, []string{logFile}))
}

// TestLateAdvice: the late-records line says what fixes the input it names.
func TestLateAdvice(t *testing.T) {
	log := "AWSLogs/111122223333/CloudTrail/us-east-1/2026/03/01/111122223333_CloudTrail_us-east-1_20260301T1200Z_0000000000000273.json.gz"
	for _, c := range []struct {
		files []string
		want  string
	}{
		{[]string{log}, "widen --reorder-window to the time a log file spans"},
		{[]string{log, "all.ndjson.gz"}, "write it to a plain file (gunzip it)"},
		{[]string{"-"}, "write it to a plain file (gunzip it)"},
		{[]string{"all.ndjson"}, "Sort the input"},
		{nil, "Sort the input"},
	} {
		if got := lateAdvice(c.files); !strings.Contains(got, c.want) {
			t.Errorf("%v: %q, want %q in it", c.files, got, c.want)
		}
	}
	if got := lateWhere([]string{"-", "a.ndjson"}); got != " (in stdin, a.ndjson)" {
		t.Errorf("lateWhere: %q", got)
	}
}
