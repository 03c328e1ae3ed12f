package replay

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestUsageErrors(t *testing.T) {
	for name, tc := range map[string]struct {
		args []string
		want []string
	}{
		"bad period":       {[]string{"--activation", "soon", "--dedup", "-1x", "testdata"}, []string{"--activation", "--dedup"}},
		"bad cidr":         {[]string{"--trusted-cidrs", "office", "testdata"}, []string{"--trusted-cidrs", "office"}},
		"bad severity":     {[]string{"--severity", "cli=LOUD", "testdata"}, []string{"--severity", "LOUD"}},
		"bad format":       {[]string{"--format", "xml", "testdata"}, []string{"--format"}},
		"no path":          {[]string{"--fresh"}, []string{"no PATH"}},
		"unreadable path":  {[]string{"does/not/exist.json"}, []string{"does/not/exist.json"}},
		"unknown flag":     {[]string{"--colour", "testdata"}, []string{"colour"}},
		"bad asn database": {[]string{"--state", "", "--asn-db", "replay.go", "testdata"}, []string{"--asn-db"}},
	} {
		t.Run(name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			if code := Main(tc.args, nil, &stdout, &stderr); code != ExitUsage {
				t.Errorf("exit %d, want %d", code, ExitUsage)
			}
			for _, w := range tc.want {
				if !strings.Contains(stderr.String(), w) {
					t.Errorf("message does not name %q: %s", w, stderr.String())
				}
			}
		})
	}
}

// TestMalformedInputStillExitsZero: a run over input with malformed records completes,
// counts them by reason, and exits 0.
func TestMalformedInputStillExitsZero(t *testing.T) {
	var stdout, stderr bytes.Buffer
	in := strings.NewReader("{not json\n{\"eventSource\":\"s3.amazonaws.com\",\"eventName\":\"X\"}\n")
	code := Main([]string{"--fresh", "--state", t.TempDir(), "-"}, in, &stdout, &stderr)
	if code != ExitOK {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	for _, w := range []string{"2 malformed values skipped", "no-event-time=1", "not-json=1"} {
		if !strings.Contains(stderr.String(), w) {
			t.Errorf("summary lacks %q: %s", w, stderr.String())
		}
	}
}

// TestStdinOnce: "- -" reads stdin once; every line of a joined error carries the prefix.
func TestStdinOnce(t *testing.T) {
	var stdout, stderr bytes.Buffer
	in := strings.NewReader("{not json\n")
	if code := Main([]string{"--fresh", "--state", t.TempDir(), "-", "-"}, in, &stdout, &stderr); code != ExitOK {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	if !strings.Contains(stderr.String(), "not-json=1") {
		t.Errorf("stdin not read once: %s", stderr.String())
	}
	stderr.Reset()
	Main([]string{"--activation", "soon", "--dedup", "-1x", "testdata"}, nil, &stdout, &stderr)
	for _, line := range strings.Split(strings.TrimSpace(stderr.String()), "\n") {
		if !strings.HasPrefix(line, "outsider replay: ") {
			t.Errorf("a line without the prefix: %q", line)
		}
	}
}

// TestRoughEdges: what a newcomer met on a first afternoon with the replay.
func TestRoughEdges(t *testing.T) {
	dir := t.TempDir()
	write := func(name, body string) string {
		t.Helper()
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	replay := func(args ...string) (string, string, int) {
		var stdout, stderr bytes.Buffer
		code := Main(append([]string{"--progress", "0", "--format", "text"}, args...), nil, &stdout, &stderr)
		return stdout.String(), stderr.String(), code
	}

	// --inventory: any other JSON is refused, naming the file; several files and folders.
	cdk := write("cdk.json", `{"app":"go run ./infra"}`)
	if _, stderr, code := replay("--fresh", "--state", t.TempDir(), "--inventory", cdk, "../../events"); code != ExitUsage || !strings.Contains(stderr, cdk) || !strings.Contains(stderr, "list-functions") {
		t.Errorf("an inventory that is cdk.json: exit %d, %s", code, stderr)
	}
	fn := func(name, role string) string {
		return `{"Functions":[{"FunctionName":"` + name + `","FunctionArn":"arn:aws:lambda:eu-west-1:123456789012:function:` + name + `","Role":"arn:aws:iam::123456789012:role/` + role + `"}]}`
	}
	write("inv/a.json", fn("a", "a-role"))
	write("inv/b.json", fn("b", "b-role"))
	c := write("c.json", fn("c", "c-role"))
	inv, err := readInventory([]string{filepath.Join(dir, "inv"), c})
	if err != nil || len(inv) != 3 {
		t.Errorf("inventory from a folder and a file: %v, %v", inv, err)
	}

	// A trail folder: its digest files are skipped quietly, and counted; a malformed
	// value is counted with the file it came from.
	trail := filepath.Join(dir, "AWSLogs", "123456789012")
	write("AWSLogs/123456789012/CloudTrail-Digest/eu-west-1/2026/05/01/123456789012_CloudTrail-Digest_eu-west-1_trail_eu-west-1_20260501T000000Z.json",
		`{"awsAccountId":"123456789012","digestStartTime":"2026-05-01T00:00:00Z","logFiles":[]}`)
	bad := write("AWSLogs/123456789012/CloudTrail/eu-west-1/2026/05/01/123456789012_CloudTrail_eu-west-1_20260501T0000Z_abc.json", `{"Records":[{"eventName":"X"}]}`)
	_, stderr, code := replay("--fresh", "--state", t.TempDir(), trail)
	if code != ExitOK || !strings.Contains(stderr, "1 CloudTrail digest files skipped") ||
		!strings.Contains(stderr, "1 malformed values skipped: not-a-record=1 in "+bad) {
		t.Errorf("trail folder: exit %d\n%s", code, stderr)
	}

	// A second replay into the same state prints nothing it printed already.
	state := t.TempDir()
	first, _, _ := replay("--state", state, "../../events")
	second, stderr, _ := replay("--state", state, "../../events")
	if !strings.Contains(first, "\nnew ") || strings.TrimSpace(second) != "no new or changed findings" || !strings.Contains(stderr, "0 created, 0 updated") {
		t.Errorf("second replay into the same state:\n%s\n%s", second, stderr)
	}
	// The calls withheld for activation are said in words, with the flag that shows them.
	if !strings.Contains(stderr, "--activation 0d") || !strings.Contains(stderr, "activation period") {
		t.Errorf("withheld calls not explained: %s", stderr)
	}
}
