package pipeline_test

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/securityhub"
	shtypes "github.com/aws/aws-sdk-go-v2/service/securityhub/types"
	"github.com/aws/aws-sdk-go-v2/service/sns"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"github.com/outsider-sec/outsider/internal/faults"
	"github.com/outsider-sec/outsider/internal/gen"
	"github.com/outsider-sec/outsider/internal/mototest"
	"github.com/outsider-sec/outsider/pkg/asff"
	"github.com/outsider-sec/outsider/pkg/detect"
	"github.com/outsider-sec/outsider/pkg/dynamo"
	"github.com/outsider-sec/outsider/pkg/hub"
	"github.com/outsider-sec/outsider/pkg/ipranges"
	"github.com/outsider-sec/outsider/pkg/notify"
	"github.com/outsider-sec/outsider/pkg/pipeline"
)

func TestMain(m *testing.M) { os.Exit(mototest.Main(m)) }

type env struct {
	account             string // the security account importing this test's findings
	table, topic, queue string
	faults              *faults.Transport
	cfg                 aws.Config // through the fault injector
	clean               aws.Config // straight to moto, for checking
	published           *published // what the handlers handed to SNS, for diagnosing a mismatch
}

// published counts the emails the handlers sent, by finding, as SNS accepted them: when
// the inbox holds more, it tells whether this code sent one twice or a duplicate arose
// below it (SNS has no deduplication).
type published struct {
	mu sync.Mutex
	n  map[string]int
}

type countingNotifier struct {
	*notify.Notifier
	p *published
}

func (c countingNotifier) Publish(ctx context.Context, f detect.Finding) error {
	err := c.Notifier.Publish(ctx, f)
	if err == nil {
		c.p.mu.Lock()
		c.p.n[f.ID]++
		c.p.mu.Unlock()
	}
	return err
}

var envN int

func setup(t testing.TB) *env {
	t.Helper()
	e := &env{faults: &faults.Transport{Next: mototest.Transport()}, published: &published{n: map[string]int{}}}
	e.clean = mototest.Config(t, nil)
	e.cfg = mototest.Config(t, e.faults)
	ctx := context.Background()
	e.table = mototest.Table(t, e.clean)
	envN++
	e.account = fmt.Sprintf("9%011d", os.Getpid()*100+envN)
	sn := sns.NewFromConfig(e.clean)
	topic, err := sn.CreateTopic(ctx, &sns.CreateTopicInput{Name: aws.String(fmt.Sprintf("findings-%d-%d", os.Getpid(), envN))})
	if err != nil {
		t.Fatal(err)
	}
	e.topic = *topic.TopicArn
	q := sqs.NewFromConfig(e.clean)
	queue, err := q.CreateQueue(ctx, &sqs.CreateQueueInput{QueueName: aws.String(fmt.Sprintf("emails-%d-%d", os.Getpid(), envN))})
	if err != nil {
		t.Fatal(err)
	}
	e.queue = *queue.QueueUrl
	attrs, err := q.GetQueueAttributes(ctx, &sqs.GetQueueAttributesInput{QueueUrl: queue.QueueUrl, AttributeNames: []sqstypes.QueueAttributeName{sqstypes.QueueAttributeNameQueueArn}})
	if err != nil {
		t.Fatal(err)
	}
	// The team's inbox, as a queue subscribed to the topic.
	if _, err := sn.Subscribe(ctx, &sns.SubscribeInput{TopicArn: topic.TopicArn, Protocol: aws.String("sqs"), Endpoint: aws.String(attrs.Attributes["QueueArn"])}); err != nil {
		t.Fatal(err)
	}
	securityhub.NewFromConfig(e.clean).EnableSecurityHub(ctx, &securityhub.EnableSecurityHubInput{})
	return e
}

// handler is one Lambda container: its own detector and store over the shared table.
func (e *env) handler(t testing.TB, logs *bytes.Buffer) (*pipeline.Handler, *dynamo.Store) {
	t.Helper()
	st := dynamo.New(dynamodb.NewFromConfig(e.cfg), e.table)
	det, err := detect.New(detect.Default(), st, ipranges.Embedded(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if logs == nil {
		logs = &bytes.Buffer{}
	}
	return &pipeline.Handler{
		Detector: det, Store: st,
		Hub:     hub.New(securityhub.NewFromConfig(e.cfg)),
		Notify:  countingNotifier{notify.New(sns.NewFromConfig(e.cfg), e.topic, "us-east-1"), e.published},
		Product: asff.Product{Partition: "aws", Region: "us-east-1", Account: e.account},
		Log:     slog.New(slog.NewJSONHandler(logs, nil)), Metrics: logs,
	}, st
}

func demo(t *testing.T) [][]byte {
	t.Helper()
	b, err := os.ReadFile("../../events/demo/history.ndjson")
	if err != nil {
		t.Fatal(err)
	}
	return bytes.Split(bytes.TrimSpace(b), []byte("\n"))
}

// batches cuts event lines into SQS batches; message ids are stable, as SQS keeps them on
// redelivery.
func batches(lines [][]byte, size int) []events.SQSEvent {
	var out []events.SQSEvent
	for i := 0; i < len(lines); i += size {
		var ev events.SQSEvent
		for j := i; j < min(i+size, len(lines)); j++ {
			ev.Records = append(ev.Records, events.SQSMessage{MessageId: fmt.Sprintf("m-%06d", j), Body: string(lines[j]), EventSource: "aws:sqs"})
		}
		out = append(out, ev)
	}
	return out
}

// deliver hands each batch to h and redelivers the failed messages, as SQS does, until
// none fail. It returns how many deliveries failed.
func deliver(t testing.TB, h *pipeline.Handler, bs []events.SQSEvent) int {
	t.Helper()
	failures := 0
	for _, ev := range bs {
		for attempt := 0; len(ev.Records) > 0; attempt++ {
			if attempt > 20 {
				t.Fatalf("messages still failing after 20 redeliveries")
			}
			resp, err := h.HandleSQS(context.Background(), ev)
			if err != nil {
				t.Fatal(err)
			}
			failed := map[string]bool{}
			for _, f := range resp.BatchItemFailures {
				failed[f.ItemIdentifier] = true
			}
			failures += len(failed)
			var again events.SQSEvent
			for _, m := range ev.Records {
				if failed[m.MessageId] {
					again.Records = append(again.Records, m)
				}
			}
			ev = again
		}
	}
	return failures
}

func (e *env) findings(t *testing.T) []shtypes.AwsSecurityFinding {
	t.Helper()
	c := securityhub.NewFromConfig(e.clean)
	var out []shtypes.AwsSecurityFinding
	p := securityhub.NewGetFindingsPaginator(c, &securityhub.GetFindingsInput{
		Filters: &shtypes.AwsSecurityFindingFilters{ProductArn: []shtypes.StringFilter{{Value: aws.String("arn:aws:securityhub:us-east-1:" + e.account + ":product/" + e.account + "/default"), Comparison: shtypes.StringFilterComparisonEquals}}},
	})
	for p.HasMorePages() {
		page, err := p.NextPage(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, page.Findings...)
	}
	// Only this test's findings, whatever the emulator's filter does.
	out = slices.DeleteFunc(out, func(f shtypes.AwsSecurityFinding) bool { return *f.AwsAccountId != e.account })
	return out
}

func (e *env) emails(t *testing.T) []string {
	t.Helper()
	q := sqs.NewFromConfig(e.clean)
	var subjects []string
	for {
		out, err := q.ReceiveMessage(context.Background(), &sqs.ReceiveMessageInput{QueueUrl: aws.String(e.queue), MaxNumberOfMessages: 10})
		if err != nil {
			t.Fatal(err)
		}
		if len(out.Messages) == 0 {
			break
		}
		for _, m := range out.Messages {
			var n struct{ Subject, Message string }
			json.Unmarshal([]byte(*m.Body), &n)
			subjects = append(subjects, n.Subject)
			if _, err := q.DeleteMessage(context.Background(), &sqs.DeleteMessageInput{QueueUrl: aws.String(e.queue), ReceiptHandle: m.ReceiptHandle}); err != nil {
				t.Fatal(err)
			}
		}
	}
	slices.Sort(subjects)
	return subjects
}

var demoTitles = []string{
	"Remote command line usage of AWS Lambda's token", // thumbnailer
	"Remote usage of AWS Lambda's token",              // webhook-relay (no ASN database here)
	"Suspicious usage of AWS Lambda's role",           // webhook-relay-role
	"Suspicious usage of AWS Lambda's token",          // billing-export
}

func titles(fs []shtypes.AwsSecurityFinding) []string {
	var out []string
	for _, f := range fs {
		out = append(out, *f.Title)
	}
	slices.Sort(out)
	return out
}

func checkDemo(t *testing.T, e *env) []shtypes.AwsSecurityFinding {
	t.Helper()
	return checkDemoEmails(t, e, true)
}

// checkDemoEmails checks the findings and the emails: exactly one per new finding, or, when
// exact is false, at least one each.
func checkDemoEmails(t *testing.T, e *env, exact bool) []shtypes.AwsSecurityFinding {
	t.Helper()
	fs := e.findings(t)
	if got := titles(fs); !slices.Equal(got, demoTitles) {
		t.Errorf("Security Hub findings %q, want %q", got, demoTitles)
	}
	emails := e.emails(t)
	if exact && len(emails) != len(demoTitles) {
		e.published.mu.Lock()
		t.Errorf("%d emails, want %d: %q; accepted by SNS from the handlers, by finding: %v", len(emails), len(demoTitles), emails, e.published.n)
		e.published.mu.Unlock()
	}
	for _, title := range demoTitles {
		if !slices.ContainsFunc(emails, func(s string) bool { return strings.Contains(s, title) }) {
			t.Errorf("no email for %q", title)
		}
	}
	for _, f := range fs {
		if *f.AwsAccountId != e.account {
			t.Errorf("AwsAccountId %s", *f.AwsAccountId)
		}
	}
	return fs
}

// TestDemoThroughTheLambdaPath: SQS batches in, DynamoDB state, Security Hub findings, one
// email per new finding; then the same messages delivered again change nothing.
func TestDemoThroughTheLambdaPath(t *testing.T) {
	e := setup(t)
	var logs bytes.Buffer
	h, _ := e.handler(t, &logs)
	if n := deliver(t, h, batches(demo(t), 10)); n != 0 {
		t.Errorf("%d failed deliveries without faults", n)
	}
	fs := checkDemo(t, e)
	counts := map[string]string{}
	for _, f := range fs {
		counts[*f.Id] = f.ProductFields["outsider/Count"]
	}
	if counts[findID(fs, "Remote command line usage of AWS Lambda's token")] != "4" {
		t.Errorf("CLI finding counts %v, want 4 calls (3 on day 16, 1 on day 21)", counts)
	}

	// Every message delivered twice more, to a fresh container too: nothing counts twice.
	deliver(t, h, batches(demo(t), 10))
	h2, _ := e.handler(t, &logs)
	deliver(t, h2, batches(demo(t), 25))
	fs = e.findings(t)
	if len(fs) != len(demoTitles) {
		t.Errorf("%d findings after redelivery", len(fs))
	}
	for _, f := range fs {
		if counts[*f.Id] != f.ProductFields["outsider/Count"] {
			t.Errorf("%s: count %s after redelivery, was %s", *f.Title, f.ProductFields["outsider/Count"], counts[*f.Id])
		}
	}
	if emails := e.emails(t); len(emails) != 0 {
		t.Errorf("redelivery sent emails: %q", emails)
	}

	// The logs: one summary a batch, metrics, and never a session token.
	if strings.Contains(logs.String(), "IQoJb3JpZ2lu") || strings.Contains(logs.String(), "sessionToken") {
		t.Error("a session token reached the logs")
	}
	if !strings.Contains(logs.String(), `"msg":"batch done"`) || !strings.Contains(logs.String(), `"CloudWatchMetrics"`) {
		t.Errorf("no summary or metrics lines:\n%.2000s", logs.String())
	}
}

func findID(fs []shtypes.AwsSecurityFinding, title string) string {
	for _, f := range fs {
		if *f.Title == title {
			return *f.Id
		}
	}
	return ""
}

// TestConcurrentWorkers: two containers see the same theft at once: one finding, one email.
func TestConcurrentWorkers(t *testing.T) {
	e := setup(t)
	lines := demo(t)
	// Train on everything before day 16's theft (2026-05-20T14:00), then race on the rest.
	cut := slices.IndexFunc(lines, func(l []byte) bool { return bytes.Contains(l, []byte(`"time":"2026-05-20T14:00:00Z"`)) })
	a, _ := e.handler(t, nil)
	deliver(t, a, batches(lines[:cut], 50))
	b, _ := e.handler(t, nil)
	deliver(t, b, batches(lines[:cut], 50)) // b learns too, as another container would over time
	theft := batches(lines[cut:cut+3], 3)
	var wg sync.WaitGroup
	for _, h := range []*pipeline.Handler{a, b} {
		wg.Add(1)
		go func() { defer wg.Done(); deliver(t, h, theft) }()
	}
	wg.Wait()
	fs := e.findings(t)
	if len(fs) != 1 || *fs[0].Title != demoTitles[0] {
		t.Fatalf("findings %q, want one %q", titles(fs), demoTitles[0])
	}
	if emails := e.emails(t); len(emails) != 1 {
		t.Errorf("%d emails, want 1: %q", len(emails), emails)
	}
}

// TestFaults: throttling, 5xx, timeouts and lost answers from DynamoDB, Security Hub and
// SNS fail the affected messages; redelivered, they succeed, and in the end there is one
// finding per case and one email per new finding.
func TestFaults(t *testing.T) {
	for _, svc := range []string{"dynamodb", "securityhub", "sns"} {
		for _, kind := range []faults.Kind{faults.Throttle, faults.ServerError, faults.Timeout, faults.LostResponse} {
			t.Run(svc+"/"+kind.String(), func(t *testing.T) {
				e := setup(t)
				every := map[string]int{"dynamodb": 7, "securityhub": 2, "sns": 2}[svc]
				// Bursts of 3 exhaust the SDK's 3 attempts: the failure reaches the handler.
				e.faults.Fail(svc, every, 3, kind, 30)
				h, _ := e.handler(t, nil)
				failures := deliver(t, h, batches(demo(t), 10))
				e.faults.Stop()
				if failures == 0 {
					t.Errorf("no message failed: the faults did not reach the handler (%v requests)", e.faults.Count)
				}
				// SNS has no deduplication for standard topics (the only kind email can
				// subscribe to): when SNS sent the email but its answer was lost, nobody can
				// know, and the email goes again rather than risk none. Every other fault
				// leaves exactly one email per new finding.
				checkDemoEmails(t, e, !(svc == "sns" && kind == faults.LostResponse))
			})
		}
	}
}

// TestDynamoRequestsPerRecord measures the cost target: the real invictus dataset plus
// generated benign traffic, through the handler in batches of 500 (the stack's batch size),
// make at most 0.01 DynamoDB requests per record.
func TestDynamoRequestsPerRecord(t *testing.T) {
	e := setup(t)
	var lines [][]byte
	// The real dataset's records, as EventBridge delivers them.
	f, err := os.Open("../cloudtrail/testdata/datasets/invictus-aws_dataset.ndjson.gz")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(zr)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		env, err := gen.Envelope(append([]byte(nil), sc.Bytes()...))
		if err != nil {
			t.Fatal(err)
		}
		lines = append(lines, env)
	}
	real := len(lines)
	var buf bytes.Buffer
	// 10,000 generated records: moto takes about 3 ms a transaction item, and the rate
	// per record does not fall with more (the history is a month either way).
	cfg := gen.Default(10_000)
	cfg.Thefts = 0
	if _, err := gen.Write(cfg, &buf); err != nil {
		t.Fatal(err)
	}
	for _, l := range bytes.Split(bytes.TrimSpace(buf.Bytes()), []byte("\n")) {
		env, _ := gen.Envelope(l)
		lines = append(lines, env)
	}
	h, st := e.handler(t, nil)
	before := e.faults.Count["dynamodb"]
	if n := deliver(t, h, batches(lines, 500)); n != 0 {
		t.Fatalf("%d failed deliveries", n)
	}
	requests := e.faults.Count["dynamodb"] - before
	perRecord := float64(requests) / float64(len(lines))
	t.Logf("DynamoDB requests: %d for %d records (%d real, %d generated): %.4f per record; items written %d (%.4f per record), read %d (%.4f per record)",
		requests, len(lines), real, len(lines)-real, perRecord, st.Written, float64(st.Written)/float64(len(lines)), st.Read, float64(st.Read)/float64(len(lines)))
	if perRecord > 0.01 {
		t.Errorf("%.4f DynamoDB requests per record, target 0.01", perRecord)
	}
}
