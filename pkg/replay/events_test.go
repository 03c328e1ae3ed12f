package replay

import (
	"bytes"
	"path/filepath"
	"strings"
	"testing"
)

// TestEventCases replays each sample event of events/ after the ones that teach the
// detector the function (learn-*), with no activation period, and checks the title it
// raises, if any.
func TestEventCases(t *testing.T) {
	want := map[string]string{
		"outside-function-token-aws-cli":                   "Remote command line usage of AWS Lambda's token",
		"outside-function-token-script":                    "Remote usage of AWS Lambda's token",
		"outside-function-token-ipv4-mapped-ipv6":          "Remote usage of AWS Lambda's token",
		"outside-function-token-failed-call-ipv6":          "Remote usage of AWS Lambda's token",
		"outside-lambda-role-session-not-issued-by-lambda": "Suspicious usage of AWS Lambda's role",
		// Everything else is silent: inside AWS, not a Lambda's token, or odd input.
	}
	learn, _ := filepath.Glob("../../events/learn-*.json")
	all, _ := filepath.Glob("../../events/*.json")
	if len(learn) < 3 || len(all) < 15 {
		t.Fatalf("events/: %d learn cases, %d in all", len(learn), len(all))
	}
	for _, f := range all {
		name := strings.TrimSuffix(filepath.Base(f), ".json")
		if strings.HasPrefix(name, "learn-") {
			continue
		}
		t.Run(name, func(t *testing.T) {
			args := append([]string{"--fresh", "--state", t.TempDir(), "--activation", "0d", "--format", "json", "--progress", "0", "--reorder-window", "0s"}, learn...)
			args = append(args, f)
			var stdout, stderr bytes.Buffer
			if code := Main(args, nil, &stdout, &stderr); code != ExitOK {
				t.Fatalf("exit %d: %s", code, stderr.String())
			}
			var titles []string
			for _, line := range strings.Split(strings.TrimSpace(stdout.String()), "\n") {
				if line != "" {
					_, w := subject(t, []byte(line))
					titles = append(titles, w.Title)
				}
			}
			switch exp, ok := want[name]; {
			case ok && (len(titles) != 1 || titles[0] != exp):
				t.Errorf("titles %q, want %q", titles, exp)
			case !ok && len(titles) != 0:
				t.Errorf("titles %q, want none", titles)
			}
		})
	}
}
