package replay

import (
	"bytes"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/outsider-sec/outsider/internal/mototest"
)

func TestMain(m *testing.M) { os.Exit(mototest.Main(m)) }

// TestBackfillDynamoDB: a backfill with --no-findings trains the deployed table (and
// satisfies the activation period); the live events that follow raise their findings at
// once, and the backfill itself raised none.
func TestBackfillDynamoDB(t *testing.T) {
	cfg := mototest.Config(t, nil)
	table := mototest.Table(t, cfg)
	t.Setenv("AWS_ENDPOINT_URL", mototest.Endpoint(t))
	t.Setenv("AWS_REGION", "us-east-1")
	t.Setenv("AWS_ACCESS_KEY_ID", "test")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "test")
	t.Setenv("AWS_EC2_METADATA_DISABLED", "true")

	b, err := os.ReadFile("../../events/demo/history.ndjson")
	if err != nil {
		t.Fatal(err)
	}
	lines := bytes.SplitAfter(b, []byte("\n"))
	// History up to day 15; "live" from day 16 (the first theft after activation).
	cut := slices.IndexFunc(lines, func(l []byte) bool { return bytes.Contains(l, []byte(`"time":"2026-05-20T`)) })
	dir := t.TempDir()
	history, live := filepath.Join(dir, "history.ndjson"), filepath.Join(dir, "live.ndjson")
	os.WriteFile(history, bytes.Join(lines[:cut], nil), 0o644)
	os.WriteFile(live, bytes.Join(lines[cut:], nil), 0o644)

	run := func(args ...string) string {
		var stdout, stderr bytes.Buffer
		if code := Main(append([]string{"--store", "dynamodb://" + table, "--format", "json", "--progress", "0"}, args...), nil, &stdout, &stderr); code != ExitOK {
			t.Fatalf("replay %v: exit %d: %s", args, code, stderr.String())
		}
		return stdout.String()
	}
	if out := run("--no-findings", history); out != "" {
		t.Errorf("the backfill raised findings:\n%s", out)
	}
	// The live part alone, from a fresh process: only the table remembers the history.
	out := run(live)
	var got []string
	last := map[string]want{}
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		if line != "" {
			id, w := subject(t, []byte(line))
			last[id] = w
		}
	}
	for _, w := range last {
		got = append(got, w.Title)
	}
	slices.Sort(got)
	wantTitles := []string{"Remote command line usage of AWS Lambda's token", "Remote usage of AWS Lambda's token", "Suspicious usage of AWS Lambda's role", "Suspicious usage of AWS Lambda's token"}
	if !slices.Equal(got, wantTitles) {
		t.Errorf("titles %q, want %q", got, wantTitles)
	}

	var stderr bytes.Buffer
	if code := Main([]string{"--store", "dynamodb://no-such-table", history}, nil, &bytes.Buffer{}, &stderr); code != ExitUsage || !strings.Contains(stderr.String(), "no-such-table") {
		t.Errorf("missing table: exit %d: %s", code, stderr.String())
	}
	if code := Main([]string{"--store", "s3://bucket", history}, nil, &bytes.Buffer{}, &stderr); code != ExitUsage {
		t.Errorf("bad --store accepted: exit %d", code)
	}
}
