package replay

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/outsider-sec/outsider/internal/gen"
	"github.com/outsider-sec/outsider/pkg/cloudtrail"
	"github.com/outsider-sec/outsider/pkg/detect"
	"github.com/outsider-sec/outsider/pkg/ipranges"
)

type expected struct {
	About    string   `json:"about"`
	Flags    []string `json:"flags"`
	Findings []want   `json:"findings"`
	// Runs are files replayed one after another into one state (the first with --fresh):
	// a live period, then a backfill, then a redelivery.
	Runs [][]string `json:"runs"`
}

type want struct {
	Title    string `json:"title"`
	Account  string `json:"account"`
	Function string `json:"function,omitempty"`
	Role     string `json:"role,omitempty"`
	Region   string `json:"region,omitempty"` // the function ARN's region, where the scenario names one
}

func readExpected(t *testing.T, dir string) expected {
	t.Helper()
	var exp expected
	b, err := os.ReadFile(filepath.Join(dir, "expected.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &exp); err != nil {
		t.Fatal(err)
	}
	return exp
}

// The forms the same records are replayed in: they must give the same findings.
var forms = []struct {
	name  string
	write func(t *testing.T, records [][]byte, dir string) string
}{
	{"ndjson-records", writeNDJSON},
	{"ndjson-envelopes", writeEnvelopes},
	{"dir-of-gz-log-files", writeLogFiles},
}

// TestScenarios replays every acceptance history in every input form and compares the
// findings with the expected ones: (title, account, function or role), nothing more.
func TestScenarios(t *testing.T) {
	dirs, _ := filepath.Glob("testdata/scenarios/*")
	if len(dirs) < 5 {
		t.Fatalf("found %d scenarios", len(dirs))
	}
	for _, dir := range dirs {
		exp := readExpected(t, dir)
		runs := exp.Runs
		if len(runs) == 0 {
			runs = [][]string{{"records.ndjson"}}
		}
		for _, form := range forms {
			t.Run(filepath.Base(dir)+"/"+form.name, func(t *testing.T) {
				state := t.TempDir()
				last := map[string]want{}
				for i, run := range runs {
					var inputs []string
					for _, file := range run {
						inputs = append(inputs, form.write(t, lines(t, filepath.Join(dir, file)), t.TempDir()))
					}
					replayFindings(t, dir, exp.Flags, state, i == 0, inputs, last)
				}
				var got []want
				for _, w := range last {
					got = append(got, w)
				}
				sortWants(got)
				w := slices.Clone(exp.Findings)
				// A region is compared only in scenarios that name one.
				if !slices.ContainsFunc(exp.Findings, func(w want) bool { return w.Region != "" }) {
					for i := range got {
						got[i].Region = ""
					}
				}
				sortWants(w)
				if diff := cmp.Diff(w, got); diff != "" {
					t.Errorf("%s\nfindings (-want +got):\n%s", exp.About, diff)
				}
			})
		}
	}
}

// replayFindings runs the command over inputs and keeps the last line of each finding Id
// in last.
func replayFindings(t *testing.T, dir string, flags []string, state string, fresh bool, inputs []string, last map[string]want) {
	t.Helper()
	args := []string{"--state", state, "--asn-db", "testdata/GeoLite2-ASN-Test.mmdb", "--format", "json", "--progress", "0"}
	for i := 0; i < len(flags); i++ {
		args = append(args, flags[i])
		if flags[i] == "--inventory" && i+1 < len(flags) {
			args = append(args, filepath.Join(dir, flags[i+1]))
			i++
		}
	}
	if fresh {
		args = append(args, "--fresh")
	}
	args = append(args, inputs...)
	var stdout, stderr bytes.Buffer
	if code := Main(args, nil, &stdout, &stderr); code != ExitOK {
		t.Fatalf("replay %v: exit %d: %s", args, code, stderr.String())
	}
	for _, line := range strings.Split(strings.TrimSpace(stdout.String()), "\n") {
		if line == "" {
			continue
		}
		id, w := subject(t, []byte(line))
		last[id] = w
	}
}

// subject reads (title, account, function or role) off an ASFF line.
func subject(t *testing.T, line []byte) (string, want) {
	t.Helper()
	var f struct {
		Id        string
		Title     string
		Resources []struct {
			Type    string
			Id      string
			Region  string
			Details struct {
				AwsLambdaFunction struct{ FunctionName string }
				AwsIamRole        struct{ RoleName string }
			}
		}
	}
	if err := json.Unmarshal(line, &f); err != nil {
		t.Fatalf("output line is not JSON: %v: %s", err, line)
	}
	w := want{Title: f.Title}
	for _, r := range f.Resources {
		switch r.Type {
		case "AwsLambdaFunction":
			w.Function = r.Details.AwsLambdaFunction.FunctionName
			if p := strings.Split(r.Id, ":"); len(p) > 3 {
				w.Region = p[3]
			}
		case "AwsIamRole":
			w.Account = strings.Split(r.Id, ":")[4]
			if f.Title == "Suspicious usage of AWS Lambda's role" {
				w.Role = r.Details.AwsIamRole.RoleName
			}
		}
	}
	return f.Id, w
}

func sortWants(ws []want) {
	slices.SortFunc(ws, func(a, b want) int {
		return strings.Compare(fmt.Sprint(a), fmt.Sprint(b))
	})
}

func lines(t *testing.T, path string) [][]byte {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out [][]byte
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		if len(bytes.TrimSpace(sc.Bytes())) > 0 {
			out = append(out, append([]byte(nil), sc.Bytes()...))
		}
	}
	return out
}

func writeNDJSON(t *testing.T, records [][]byte, dir string) string {
	p := filepath.Join(dir, "records.ndjson")
	if err := os.WriteFile(p, append(bytes.Join(records, []byte("\n")), '\n'), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func writeEnvelopes(t *testing.T, records [][]byte, dir string) string {
	var buf bytes.Buffer
	for _, r := range records {
		e, err := gen.Envelope(r)
		if err != nil {
			t.Fatal(err)
		}
		buf.Write(e)
		buf.WriteByte('\n')
	}
	p := filepath.Join(dir, "envelopes.ndjson")
	if err := os.WriteFile(p, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// writeLogFiles writes a trail folder as CloudTrail does (gen.TrailWriter):
// AWSLogs/<account>/CloudTrail/<region>/<yyyy>/<mm>/<dd>/, one gzipped file per account,
// region and five minutes. Walked by name, us-east-1 comes before us-west-2 whatever the
// time: the replay must merge the files by time.
func writeLogFiles(t *testing.T, records [][]byte, dir string) string {
	w := gen.NewTrailWriter(dir)
	for _, r := range records {
		if err := w.Add(r); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return dir
}

// TestPresignedFindingsSetting: with --presigned-findings, the presigned-URL uses of the
// presigned-and-endpoint history become findings of their own; without it, only the theft.
func TestPresignedFindingsSetting(t *testing.T) {
	dir := "testdata/scenarios/presigned-and-endpoint"
	in := filepath.Join(dir, "records.ndjson")
	off, on := map[string]want{}, map[string]want{}
	replayFindings(t, dir, nil, t.TempDir(), true, []string{in}, off)
	replayFindings(t, dir, []string{"--presigned-findings"}, t.TempDir(), true, []string{in}, on)
	if len(off) != 1 || len(on) <= len(off) {
		t.Errorf("findings: %d without the setting (want 1), %d with it (want more)", len(off), len(on))
	}
}

// TestScenariosSplitAcrossInputs replays every scenario (without runs) split across three
// inputs of different forms given together — an NDJSON of envelopes holding the calls from
// outside AWS, an NDJSON of records holding every third day of the rest, and a CloudTrail
// folder holding the rest, each in time order —
// and wants the scenario's findings: the replay merges every input by event time, it does
// not read one before the others.
func TestScenariosSplitAcrossInputs(t *testing.T) {
	dirs, _ := filepath.Glob("testdata/scenarios/*")
	for _, dir := range dirs {
		exp := readExpected(t, dir)
		if len(exp.Runs) > 0 {
			continue
		}
		t.Run(filepath.Base(dir), func(t *testing.T) {
			parts := make([][][]byte, 3)
			ranges := ipranges.Embedded()
			for _, l := range lines(t, filepath.Join(dir, "records.ndjson")) {
				var r struct {
					EventTime       time.Time
					SourceIPAddress string
				}
				if err := json.Unmarshal(l, &r); err != nil {
					t.Fatal(err)
				}
				// Calls from outside AWS (the thefts, people's calls) in the envelopes,
				// every third day of the rest in the records, the rest in the trail.
				i := 0
				if a := cloudtrail.ParseAddr(r.SourceIPAddress); detect.Public(a) && !ranges.Contains(a) {
					i = 1
				} else if r.EventTime.Unix()/86400%3 == 0 {
					i = 2
				}
				parts[i] = append(parts[i], l)
			}
			// The envelopes and records are named first: a replay that read them before
			// the trail would decide their calls without the trail's days.
			inputs := []string{
				writeEnvelopes(t, parts[1], t.TempDir()),
				writeNDJSON(t, parts[2], t.TempDir()),
				writeLogFiles(t, parts[0], t.TempDir()),
			}
			last := map[string]want{}
			replayFindings(t, dir, exp.Flags, t.TempDir(), true, inputs, last)
			var got []want
			for _, w := range last {
				w.Region = ""
				got = append(got, w)
			}
			w := slices.Clone(exp.Findings)
			for i := range w {
				w[i].Region = ""
			}
			sortWants(got)
			sortWants(w)
			if diff := cmp.Diff(w, got); diff != "" {
				t.Errorf("%s\nfindings (-want +got):\n%s", exp.About, diff)
			}
		})
	}
}
