package replay

import (
	"bytes"
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
	for _, w := range []string{"2 malformed skipped", "no-event-time=1", "not-json=1"} {
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
