package replay

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
)

// TestInvestigationAnswers: replaying the demo, where tokens are stolen, every finding and
// every email answers the three questions of an investigation: is the role attached to the function, did another identity assume it, and which calls did the key make?
func TestInvestigationAnswers(t *testing.T) {
	run := func(format string) string {
		var stdout, stderr bytes.Buffer
		if code := Main([]string{"--fresh", "--state", t.TempDir(), "--format", format, "--progress", "0", "../../events/demo"}, nil, &stdout, &stderr); code != ExitOK {
			t.Fatalf("exit %d: %s", code, stderr.String())
		}
		return stdout.String()
	}
	last := map[string]map[string]any{}
	for _, line := range strings.Split(strings.TrimSpace(run("json")), "\n") {
		var f map[string]any
		if err := json.Unmarshal([]byte(line), &f); err != nil {
			t.Fatal(err)
		}
		last[f["Id"].(string)] = f
	}
	want := map[string][]string{ // title -> what its answers must say
		"Suspicious usage of AWS Lambda's token":          {"Role attached: yes", "given this role on 2026-05-04", "Assumed by another identity: none", "Calls by the key from outside: 2 (0 failed): s3:ListBuckets, s3:GetObject", "lookup-events"},
		"Suspicious usage of AWS Lambda's role":           {"Role attached: yes: webhook-relay-role is the role of function(s) webhook-relay", "Assumed by another identity: yes: this session's key came from arn:aws:iam::123456789012:user/contractor", "Calls by the key from outside: 3"},
		"Remote command line usage of AWS Lambda's token": {"Role attached: unknown", "Calls by the key from outside: 4 (0 failed)"},
		"Remote usage of AWS Lambda's token":              {"Calls by the key from outside: 3 (3 failed)"},
	}
	if len(last) != len(want) {
		t.Fatalf("%d findings, want %d", len(last), len(want))
	}
	for _, f := range last {
		title := f["Title"].(string)
		text := f["Remediation"].(map[string]any)["Recommendation"].(map[string]any)["Text"].(string)
		for _, w := range want[title] {
			if !strings.Contains(text, w) {
				t.Errorf("%s: the remediation lacks %q:\n%s", title, w, text)
			}
		}
		pf := f["ProductFields"].(map[string]any)
		if pf["outsider/RoleAttached"] == nil || pf["outsider/ApiCalls"] == nil || pf["outsider/LookupEvents"] == nil {
			t.Errorf("%s: product fields lack the answers: %v", title, pf)
		}
	}
	emails := run("email")
	if n := strings.Count(emails, "Subject: "); n != 4 {
		t.Errorf("%d emails, want 4", n)
	}
	for _, w := range []string{"Role attached: yes: billing-export-role is billing-export's role", "user/contractor assumed webhook-relay-role at 2026-05-24T14:59:00Z from 1.128.9.9", "Calls by the key from outside: 3 (0 failed): sts:GetCallerIdentity, s3:ListBuckets, iam:ListRoles"} { // the email goes out when the finding opens, before its fourth call
		if !strings.Contains(emails, w) {
			t.Errorf("the emails lack %q", w)
		}
	}
}

// TestEmailClaims: the email format claims each finding's email in the state as the Lambda
// does: a finding not emailed yet is emailed when it is next handed on (here, after a run
// in another format), and never twice.
func TestEmailClaims(t *testing.T) {
	state := t.TempDir()
	run := func(args ...string) string {
		var stdout, stderr bytes.Buffer
		args = append([]string{"--state", state, "--progress", "0"}, args...)
		if code := Main(append(args, "../../events/demo"), nil, &stdout, &stderr); code != ExitOK {
			t.Fatalf("exit %d: %s", code, stderr.String())
		}
		return stdout.String()
	}
	// The replay prints a finding when it writes it (every 64,000 records): the demo's update
	// of a finding comes before that, so each finding is printed once, in its last state.
	if out := run("--fresh", "--format", "json"); strings.Count(out, "\n") != 4 {
		t.Fatalf("first run: %q, want 4 lines (4 findings opened)", out)
	}
	if n := strings.Count(run("--format", "email"), "Subject: "); n != 4 {
		t.Fatalf("second run: %d emails, want 4 (none was emailed yet)", n)
	}
	if out := run("--format", "email"); strings.Contains(out, "Subject: ") {
		t.Errorf("third run over the same state emailed again:\n%s", out)
	}
}
