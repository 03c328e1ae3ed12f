package pipeline_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/securityhub/types"
	"github.com/google/go-cmp/cmp"

	"github.com/outsider-sec/outsider/internal/gen"
	"github.com/outsider-sec/outsider/pkg/asff"
	"github.com/outsider-sec/outsider/pkg/detect"
	"github.com/outsider-sec/outsider/pkg/ipranges"
	"github.com/outsider-sec/outsider/pkg/pipeline"
	"github.com/outsider-sec/outsider/pkg/silence"
	"github.com/outsider-sec/outsider/pkg/store"
)

// The residual of order: a learning event (Lambda's AssumeRole, the function's own calls)
// that arrives N minutes after the call it explains, beyond its batch, can change that
// call's title or hide it. TestResidualLateLearning measures how often, through the
// Lambda's handler (the memory store stands in for DynamoDB: the reference model), and
// prints the table that the README quotes. It asserts only that no delay changes nothing.

// memoryHandler is a Lambda handler over the memory store (the reference model), with a
// Security Hub that takes everything and no email.
func memoryHandler(tb testing.TB) (*pipeline.Handler, *detect.Detector) {
	tb.Helper()
	st := store.NewMemory()
	det, err := detect.New(detect.Default(), st, ipranges.Embedded(), nil)
	if err != nil {
		tb.Fatal(err)
	}
	return &pipeline.Handler{Detector: det, Store: st, Hub: hubSink{}, Notify: noEmail{},
		Product: asff.Product{Partition: "aws", Region: "us-east-1", Account: "111122223333"}, Log: slog.New(slog.NewTextHandler(io.Discard, nil))}, det
}

type hubSink struct{}

func (hubSink) Import(context.Context, []types.AwsSecurityFinding) error { return nil }

type noEmail struct{}

func (noEmail) Enabled() bool                                 { return false }
func (noEmail) Publish(context.Context, detect.Finding) error { return nil }

var attackerPrefixes = []string{"27.192.8.", "36.192.7.", "38.73.131."}

type genRecord struct {
	EventID         string `json:"eventID"`
	Recipient       string `json:"recipientAccountId"`
	EventTime       time.Time
	EventName       string `json:"eventName"`
	SourceIPAddress string `json:"sourceIPAddress"`
	UserIdentity    struct {
		InvokedBy string `json:"invokedBy"`
		ARN       string `json:"arn"`
	} `json:"userIdentity"`
}

// titlesOfThefts delivers the history in SQS batches of 100, the learning records arriving
// delay late, and returns the title code each theft call was counted under ("" when none).
func titlesOfThefts(t *testing.T, lines [][]byte, delay time.Duration) map[string]string {
	t.Helper()
	type arrival struct {
		at   time.Time
		line []byte
	}
	var in []arrival
	var thefts []string
	for _, l := range lines {
		var r genRecord
		if err := json.Unmarshal(l, &r); err != nil {
			t.Fatal(err)
		}
		at := r.EventTime
		attacker := slices.ContainsFunc(attackerPrefixes, func(p string) bool { return strings.HasPrefix(r.SourceIPAddress, p) })
		switch {
		case attacker:
			thefts = append(thefts, r.Recipient+"#"+r.EventID)
		case r.UserIdentity.InvokedBy == "lambda.amazonaws.com" && r.EventName == "AssumeRole",
			strings.Contains(r.UserIdentity.ARN, ":assumed-role/svc-"):
			at = at.Add(delay) // Lambda's AssumeRole and the functions' own calls
		}
		env, err := gen.Envelope(l)
		if err != nil {
			t.Fatal(err)
		}
		in = append(in, arrival{at, env})
	}
	slices.SortStableFunc(in, func(a, b arrival) int { return a.at.Compare(b.at) })
	var envs [][]byte
	for _, a := range in {
		envs = append(envs, a.line)
	}
	h, det := memoryHandler(t)
	if n := deliver(t, h, batches(envs, 100)); n != 0 {
		t.Fatalf("%d failed deliveries", n)
	}
	out := map[string]string{}
	for _, id := range thefts {
		recipient, eventID, _ := strings.Cut(id, "#")
		f, ok, err := det.CountedIn(context.Background(), recipient, eventID)
		if err != nil {
			t.Fatal(err)
		}
		if ok {
			out[id] = string(f.Title)
		} else {
			out[id] = ""
		}
	}
	return out
}

func TestResidualLateLearning(t *testing.T) {
	var table bytes.Buffer
	fmt.Fprintln(&table, "| thefts | delay | calls | title changed | hidden |")
	fmt.Fprintln(&table, "|---|---|---|---|---|")
	for _, fresh := range []bool{false, true} {
		var histories [][][]byte
		for seed := uint64(1); seed <= 8; seed++ {
			cfg := gen.Default(4000)
			cfg.Seed, cfg.Thefts, cfg.Functions, cfg.Accounts, cfg.Days, cfg.FreshKeyThefts = seed, 8, 6, 2, 40, fresh
			var buf bytes.Buffer
			if _, err := gen.Write(cfg, &buf); err != nil {
				t.Fatal(err)
			}
			histories = append(histories, bytes.Split(bytes.TrimSpace(buf.Bytes()), []byte("\n")))
		}
		var refs []map[string]string
		for _, h := range histories {
			refs = append(refs, titlesOfThefts(t, h, 0))
		}
		kind := "any time"
		if fresh {
			kind = "minutes after a cold start"
		}
		for _, delay := range []time.Duration{time.Minute, 5 * time.Minute, 15 * time.Minute, time.Hour} {
			calls, changed, hidden := 0, 0, 0
			for i, h := range histories {
				got := titlesOfThefts(t, h, delay)
				for id, want := range refs[i] {
					calls++
					switch g := got[id]; {
					case g == "" && want != "":
						hidden++
					case g != want:
						changed++
					}
				}
			}
			fmt.Fprintf(&table, "| %s | %s | %d | %d (%.0f%%) | %d (%.0f%%) |\n", kind, delay, calls, changed, 100*float64(changed)/float64(max(calls, 1)), hidden, 100*float64(hidden)/float64(max(calls, 1)))
		}
		// The same delivery twice gives the same titles: the measurement is sound.
		if again := titlesOfThefts(t, histories[0], 0); !mapsEqual(again, refs[0]) {
			t.Errorf("the reference is not reproducible")
		}
	}
	t.Logf("late learning events, through the Lambda's handler:\n%s", table.String())
}

func mapsEqual(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

// TestRecordsByAccount: each invocation reports its records by recipient account (the
// metric the stack's silence alarms watch), and forged messages count for no account.
func TestRecordsByAccount(t *testing.T) {
	h, det := memoryHandler(t)
	var metrics bytes.Buffer
	h.Metrics = &metrics
	now := time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)
	h.Now = func() time.Time { return now }
	h.Heard = &silence.Register{Store: h.Store}
	lines := demo(t)
	want := map[string]int{}
	for _, l := range lines {
		var env struct {
			Detail struct {
				Recipient string `json:"recipientAccountId"`
			} `json:"detail"`
		}
		if err := json.Unmarshal(l, &env); err != nil {
			t.Fatal(err)
		}
		want[env.Detail.Recipient]++
	}
	bs := batches(append(lines, []byte(`{"eventName":"GetCallerIdentity","eventSource":"sts.amazonaws.com","eventTime":"2026-01-01T00:00:00Z","recipientAccountId":"999999999999"}`)), 100)
	deliver(t, h, bs)
	got := map[string]int{}
	withheld := 0
	for _, l := range bytes.Split(bytes.TrimSpace(metrics.Bytes()), []byte("\n")) {
		var m struct {
			Account               string
			AccountRecords        int
			WithheldForActivation int
		}
		if json.Unmarshal(l, &m) == nil && m.Account != "" {
			got[m.Account] += m.AccountRecords
		}
		withheld += m.WithheldForActivation
	}
	// Calls withheld for activation are a metric, never silent: the demo's first thefts.
	if withheld == 0 || withheld != det.Stats.Inactive {
		t.Errorf("WithheldForActivation %d, the detector withheld %d", withheld, det.Stats.Inactive)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("records by account (-want +got):\n%s", diff)
	}
	// Every account heard from, none configured, is in the register the refresher reads:
	// silent 7 hours later.
	q, err := silence.Check(context.Background(), h.Store, now.Add(7*time.Hour), 6*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	var quiet []string
	for _, a := range q {
		quiet = append(quiet, a.Account)
	}
	if diff := cmp.Diff(slices.Sorted(maps.Keys(want)), quiet); diff != "" {
		t.Errorf("accounts silent 7 hours later (-want +got):\n%s", diff)
	}
}
