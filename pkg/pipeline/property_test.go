package pipeline_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	ddbtypes "github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/google/go-cmp/cmp"

	"github.com/outsider-sec/outsider/internal/gen"
	"github.com/outsider-sec/outsider/internal/storetest"
	"github.com/outsider-sec/outsider/pkg/detect"
	"github.com/outsider-sec/outsider/pkg/dynamo"
	"github.com/outsider-sec/outsider/pkg/flow"
	"github.com/outsider-sec/outsider/pkg/pipeline"
)

// The properties of order and delivery through the Lambda's path (SQS batches, the
// handler, DynamoDB in moto, Security Hub, SNS), on seeded generated histories.

// lambdaHistory is a generated history with thefts, as EventBridge envelopes.
func lambdaHistory(t *testing.T, seed uint64) [][]byte {
	t.Helper()
	cfg := gen.Default(2500)
	cfg.Seed, cfg.Thefts, cfg.Functions, cfg.Accounts, cfg.Days = seed, 5, 4, 2, 40
	var buf bytes.Buffer
	if _, err := gen.Write(cfg, &buf); err != nil {
		t.Fatal(err)
	}
	var out [][]byte
	for _, l := range bytes.Split(bytes.TrimSpace(buf.Bytes()), []byte("\n")) {
		env, err := gen.Envelope(l)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, env)
	}
	return out
}

// outcomes is every finding in Security Hub: what it counts, where from, which calls.
func (e *env) outcomes(t *testing.T) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, f := range e.findings(t) {
		pf := f.ProductFields
		out[*f.Id] = fmt.Sprintf("%s count=%s failed=%s first=%s last=%s from=%s calls=%s", *f.Title, pf["outsider/Count"], pf["outsider/FailedCount"],
			pf["outsider/FirstSeen"], pf["outsider/LastSeen"], pf["outsider/SourceIPs"], pf["outsider/ApiCalls"])
	}
	return out
}

// scan hands each item of the table whose key begins with prefix to each.
func (e *env) scan(t *testing.T, match func(key string) bool, each func(key string, item map[string]ddbtypes.AttributeValue)) {
	t.Helper()
	p := dynamodb.NewScanPaginator(dynamodb.NewFromConfig(e.clean), &dynamodb.ScanInput{TableName: aws.String(e.table)})
	for p.HasMorePages() {
		page, err := p.NextPage(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		for _, it := range page.Items {
			if k, ok := it[dynamo.AttrKey].(*ddbtypes.AttributeValueMemberS); ok && match(k.Value) {
				each(k.Value, it)
			}
		}
	}
}

// stored reads every finding the table holds.
func (e *env) stored(t *testing.T) []detect.Finding {
	t.Helper()
	var out []detect.Finding
	e.scan(t, detect.IsFindingKey, func(key string, it map[string]ddbtypes.AttributeValue) {
		var f detect.Finding
		v, _ := it[dynamo.AttrValue].(*ddbtypes.AttributeValueMemberB)
		if v == nil || json.Unmarshal(v.Value, &f) != nil {
			t.Fatalf("%s: not a finding", key)
		}
		out = append(out, f)
	})
	return out
}

// checkInvariants: every call in exactly one finding, every finding's calls inside its
// window, one email per finding.
func checkInvariants(t *testing.T, e *env, emails []string) {
	t.Helper()
	seen := map[string]string{}
	fs := e.stored(t)
	if len(fs) == 0 {
		t.Fatal("no finding: the property says nothing")
	}
	for _, f := range fs {
		if f.Count != len(f.EventIDs) {
			t.Errorf("%s counts %d calls but holds %d", f.ID, f.Count, len(f.EventIDs))
		}
		for _, id := range f.EventIDs {
			if other, ok := seen[id]; ok {
				t.Errorf("a call is in two findings: %s and %s", other, f.ID)
			}
			seen[id] = f.ID
		}
		end := f.PeriodStart.Add(detect.Default().Dedup)
		if f.FirstSeen.Before(f.PeriodStart) || !f.LastSeen.Before(end) {
			t.Errorf("%s: calls from %s to %s, outside its window [%s, %s)", f.ID, f.FirstSeen, f.LastSeen, f.PeriodStart, end)
		}
	}
	if len(emails) != len(fs) {
		t.Errorf("%d emails for %d findings: %q", len(emails), len(fs), emails)
	}
}

func TestLambdaProperties(t *testing.T) {
	for _, seed := range []uint64{1, 2} {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			lines := lambdaHistory(t, seed)
			bs := batches(lines, 100)

			// The reference: one container, batches in order.
			ref := setup(t)
			h, _ := ref.handler(t, nil)
			if n := deliver(t, h, bs); n != 0 {
				t.Fatalf("%d failed deliveries", n)
			}
			want, wantEmails := ref.outcomes(t), ref.emails(t)
			if len(want) == 0 {
				t.Fatal("the history raised no finding")
			}
			checkInvariants(t, ref, wantEmails)

			t.Run("redelivered to a fresh container", func(t *testing.T) {
				h2, _ := ref.handler(t, nil)
				deliver(t, h2, batches(lines, 77))
				if diff := cmp.Diff(want, ref.outcomes(t)); diff != "" {
					t.Errorf("findings changed (-once +twice):\n%s", diff)
				}
				if emails := ref.emails(t); len(emails) != 0 {
					t.Errorf("redelivery sent %q", emails)
				}
			})

			t.Run("a new container for every batch", func(t *testing.T) {
				e := setup(t)
				for _, b := range bs {
					h, _ := e.handler(t, nil)
					deliver(t, h, []events.SQSEvent{b})
				}
				if diff := cmp.Diff(want, e.outcomes(t)); diff != "" {
					t.Errorf("findings (-one container +restarts):\n%s", diff)
				}
				if diff := cmp.Diff(wantEmails, e.emails(t)); diff != "" {
					t.Errorf("emails (-one container +restarts):\n%s", diff)
				}
			})

			t.Run("shuffled across concurrent workers", func(t *testing.T) {
				e := setup(t)
				shuffled := slices.Clone(bs)
				rng := rand.New(rand.NewPCG(seed, 3))
				// Batches in any order within a day's reach (as SQS and retries give
				// them), taken by three containers at once.
				for i := range shuffled {
					j := min(len(shuffled)-1, i+rng.IntN(4))
					shuffled[i], shuffled[j] = shuffled[j], shuffled[i]
				}
				var wg sync.WaitGroup
				work := make(chan events.SQSEvent)
				for range 3 {
					h, _ := e.handler(t, nil)
					wg.Add(1)
					go func() {
						defer wg.Done()
						for b := range work {
							deliver(t, h, []events.SQSEvent{b})
						}
					}()
				}
				for _, b := range shuffled {
					work <- b
				}
				close(work)
				wg.Wait()
				checkInvariants(t, e, e.emails(t))
			})

			t.Run("thefts split across batches that concurrent workers decide in any order", func(t *testing.T) {
				// Every call from an attacker's address is a batch of its own; the rest is
				// delivered first. Three containers then take the thefts' batches at once,
				// in a shuffled order: each theft is still one finding and one email,
				// as in the reference.
				var rest, thefts [][]byte
				for _, l := range lines {
					if slices.ContainsFunc(attackerPrefixes, func(p string) bool { return bytes.Contains(l, []byte(`"sourceIPAddress":"`+p)) }) {
						thefts = append(thefts, l)
					} else {
						rest = append(rest, l)
					}
				}
				if len(thefts) < 2 {
					t.Fatalf("%d theft calls", len(thefts))
				}
				e := setup(t)
				h, _ := e.handler(t, nil)
				deliver(t, h, batches(rest, 100))
				one := batches(thefts, 1)
				rng := rand.New(rand.NewPCG(seed, 7))
				rng.Shuffle(len(one), func(i, j int) { one[i], one[j] = one[j], one[i] })
				var wg sync.WaitGroup
				start := make(chan struct{})
				work := make(chan events.SQSEvent, len(one))
				for _, b := range one {
					work <- b
				}
				close(work)
				for range 3 {
					h, _ := e.handler(t, nil)
					wg.Add(1)
					go func() {
						defer wg.Done()
						<-start
						for b := range work {
							deliver(t, h, []events.SQSEvent{b})
						}
					}()
				}
				close(start)
				wg.Wait()
				// The lists keep the order calls arrived in: compared as sets.
				if diff := cmp.Diff(storetest.ListsAsSets(want), storetest.ListsAsSets(e.outcomes(t))); diff != "" {
					t.Errorf("findings (-reference +split and raced):\n%s", diff)
				}
				checkInvariants(t, e, e.emails(t))
			})
		})
	}
}

// TestForgedEventsChangeNothing: events any principal of the organisation could put on the
// bus — a source that is not AWS's, or an envelope account other than the record's — are
// counted as forged and never learned from: the state and the findings stay as they were.
func TestForgedEventsChangeNothing(t *testing.T) {
	e := setup(t)
	h, _ := e.handler(t, nil)
	lines := demo(t)
	deliver(t, h, batches(lines, 50))
	want, items := e.outcomes(t), len(e.stored(t))
	e.emails(t)

	var forged [][]byte
	for i, l := range lines {
		var env map[string]any
		if err := json.Unmarshal(l, &env); err != nil {
			t.Fatal(err)
		}
		detail := env["detail"].(map[string]any)
		detail["eventID"] = fmt.Sprintf("forged-%d", i)
		if i%2 == 0 {
			env["source"] = "custom.attacker"
		} else {
			env["account"] = "999999999999"
		}
		b, _ := json.Marshal(env)
		forged = append(forged, b)
	}
	var logs bytes.Buffer
	h2, _ := e.handler(t, &logs)
	if n := deliver(t, h2, batches(forged, 50)); n != 0 {
		t.Errorf("%d forged messages failed: they must be counted and dropped, not retried", n)
	}
	if diff := cmp.Diff(want, e.outcomes(t)); diff != "" {
		t.Errorf("forged events changed the findings:\n%s", diff)
	}
	if got := len(e.stored(t)); got != items {
		t.Errorf("%d findings stored after forged events, %d before", got, items)
	}
	if emails := e.emails(t); len(emails) != 0 {
		t.Errorf("forged events sent %q", emails)
	}
	if !strings.Contains(logs.String(), `"reason":"forged"`) {
		t.Errorf("forged events not logged as forged:\n%.1000s", logs.String())
	}
	if strings.Contains(logs.String(), "forged-1") {
		t.Error("a forged event's content reached the logs")
	}
}

// TestEmailLease: a container that died between claiming a finding's email and sending it
// leaves a claim; the next delivery sends the email once the claim's lease has passed, and
// not before.
func TestEmailLease(t *testing.T) {
	e := setup(t)
	h, _ := e.handler(t, nil)
	lines := demo(t)
	deliver(t, h, batches(lines, 50))
	sent := e.emails(t)
	if len(sent) == 0 {
		t.Fatal("no email")
	}
	db := dynamodb.NewFromConfig(e.clean)
	claims := func(at time.Time) int {
		n := 0
		e.scan(t, flow.IsEmailKey, func(_ string, it map[string]ddbtypes.AttributeValue) {
			it[dynamo.AttrValue] = &ddbtypes.AttributeValueMemberB{Value: []byte(fmt.Sprintf(`{"claimedBy":"dead","at":%d}`, at.Unix()))}
			if _, err := db.PutItem(context.Background(), &dynamodb.PutItemInput{TableName: aws.String(e.table), Item: it}); err != nil {
				t.Fatal(err)
			}
			n++
		})
		return n
	}
	// Claimed a minute ago by a container that is still (perhaps) sending: nothing.
	if n := claims(time.Now().Add(-time.Minute)); n != len(sent) {
		t.Fatalf("%d claims for %d emails", n, len(sent))
	}
	h2, _ := e.handler(t, nil)
	deliver(t, h2, batches(lines, 50))
	if emails := e.emails(t); len(emails) != 0 {
		t.Errorf("a live claim was taken over: %q", emails)
	}
	// Claimed an hour ago and never marked sent: the container died. Sent now, once.
	claims(time.Now().Add(-time.Hour))
	h3, _ := e.handler(t, nil)
	deliver(t, h3, batches(lines, 50))
	h4, _ := e.handler(t, nil)
	deliver(t, h4, batches(lines, 50))
	if diff := cmp.Diff(sent, e.emails(t)); diff != "" {
		t.Errorf("emails after the lease (-first +resent):\n%s", diff)
	}
}

// TestDeadline: near the invocation's deadline the handler stops taking records and
// reports the rest as batch item failures, instead of timing out the whole batch; what it
// decided is kept, and the redelivered rest completes the same findings.
func TestDeadline(t *testing.T) {
	e := setup(t)
	h, _ := e.handler(t, nil)
	lines := demo(t)
	ctx, cancel := context.WithDeadline(context.Background(), time.Now().Add(pipeline.DeadlineMargin-time.Second))
	defer cancel()
	resp, err := h.HandleSQS(ctx, batches(lines, len(lines))[0])
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.BatchItemFailures) != len(lines) {
		t.Errorf("%d of %d messages reported for retry", len(resp.BatchItemFailures), len(lines))
	}
	deliver(t, h, batches(lines, 50))
	checkDemo(t, e)
}
