package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/securityhub"
	"github.com/aws/aws-sdk-go-v2/service/sns"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/google/go-cmp/cmp"

	"github.com/outsider-sec/outsider/internal/gen"
	"github.com/outsider-sec/outsider/internal/mototest"
	"github.com/outsider-sec/outsider/internal/storetest"
	"github.com/outsider-sec/outsider/pkg/config"
)

func TestMain(m *testing.M) {
	code := mototest.Main(m)
	if bin != "" {
		os.RemoveAll(filepath.Dir(bin))
	}
	os.Exit(code)
}

// build compiles the bootstrap as it is deployed (-tags lambda.norpc, static, linux), for
// this machine's architecture so that it runs here.
func build(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "bootstrap-")
		if err != nil {
			buildErr = err
			return
		}
		bin = filepath.Join(dir, "bootstrap")
		cmd := exec.Command("go", "build", "-tags", "lambda.norpc", "-trimpath", "-ldflags=-s -w", "-o", bin, ".")
		cmd.Env = append(os.Environ(), "GOOS=linux", "GOARCH="+runtime.GOARCH, "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return bin
}

var (
	buildOnce sync.Once
	bin       string
	buildErr  error
)

// runtimeAPI is a small fake of the Lambda Runtime API: it hands out one invocation and
// keeps what the function answers.
// https://docs.aws.amazon.com/lambda/latest/dg/runtimes-api.html
type runtimeAPI struct {
	payloads [][]byte // the invocations, in turn
	mu       sync.Mutex
	served   int
	asked    []time.Time // when each invocation was asked for
	answer   chan string // "response: BODY" or "error: BODY"
}

func (f *runtimeAPI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch {
	case r.Method == http.MethodGet && r.URL.Path == "/2018-06-01/runtime/invocation/next":
		f.mu.Lock()
		n := f.served
		f.served++
		f.asked = append(f.asked, time.Now())
		f.mu.Unlock()
		// No more invocations: wait for a redelivery, or to be stopped.
		for {
			f.mu.Lock()
			more := n < len(f.payloads)
			f.mu.Unlock()
			if more {
				break
			}
			select {
			case <-r.Context().Done():
				return
			case <-time.After(20 * time.Millisecond):
			}
		}
		f.mu.Lock()
		payloads := f.payloads
		f.mu.Unlock()
		w.Header().Set("Lambda-Runtime-Aws-Request-Id", fmt.Sprintf("req-%d", n+1))
		w.Header().Set("Lambda-Runtime-Deadline-Ms", fmt.Sprint(time.Now().Add(5*time.Minute).UnixMilli()))
		w.Header().Set("Lambda-Runtime-Invoked-Function-Arn", "arn:aws:lambda:us-east-1:123456789012:function:outsider-detector")
		w.Write(payloads[n])
	case r.Method == http.MethodPost && strings.HasSuffix(r.URL.Path, "/response"):
		b, _ := io.ReadAll(r.Body)
		w.WriteHeader(http.StatusAccepted)
		f.answer <- "response: " + string(b)
	case r.Method == http.MethodPost && strings.HasSuffix(r.URL.Path, "/error"):
		b, _ := io.ReadAll(r.Body)
		w.WriteHeader(http.StatusAccepted)
		f.answer <- "error: " + string(b)
	default:
		http.NotFound(w, r)
	}
}

// TestBootstrap runs the deploy artifact against the fake Runtime API and moto, with an
// SQS batch of the demo history, and finds the findings in Security Hub.
func TestBootstrap(t *testing.T) {
	titles := runBootstrap(t, "210000000001", nil)
	want := []string{"Remote command line usage of AWS Lambda's token", "Remote usage of AWS Lambda's token", "Suspicious usage of AWS Lambda's role", "Suspicious usage of AWS Lambda's token"}
	if !slices.Equal(titles, want) {
		t.Errorf("titles %q, want %q", titles, want)
	}
}

// TestBootstrapWithASN: the ASN database comes from S3 at cold start (MaxMind's test
// database): the company's own network now makes the last use the known-ASN title.
func TestBootstrapWithASN(t *testing.T) {
	cfg := mototest.Config(t, nil)
	client := s3.NewFromConfig(cfg, func(o *s3.Options) { o.UsePathStyle = true })
	ctx := context.Background()
	if _, err := client.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String("bootstrap-asn")}); err != nil {
		t.Fatal(err)
	}
	db, err := os.ReadFile("../../pkg/asn/testdata/GeoLite2-ASN-Test.mmdb")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := client.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String("bootstrap-asn"), Key: aws.String("asn.mmdb"), Body: bytes.NewReader(db)}); err != nil {
		t.Fatal(err)
	}
	titles := runBootstrap(t, "210000000002", []string{config.EnvASNDB + "=s3://bootstrap-asn/asn.mmdb", "AWS_S3_USE_PATH_STYLE=true"})
	if !slices.Contains(titles, "Usage of AWS Lambda's token from known ASN") || slices.Contains(titles, "Remote usage of AWS Lambda's token") {
		t.Errorf("titles %q: the ASN database was not used", titles)
	}
}

// runBootstrap runs the bootstrap on the demo history, in one invocation, and returns the
// titles of the findings it imported for account.
func runBootstrap(t *testing.T, account string, env []string) []string {
	t.Helper()
	lines, err := os.ReadFile("../../events/demo/history.ndjson")
	if err != nil {
		t.Fatal(err)
	}
	var batch events.SQSEvent
	for i, l := range bytes.Split(bytes.TrimSpace(lines), []byte("\n")) {
		batch.Records = append(batch.Records, events.SQSMessage{MessageId: fmt.Sprintf("m-%d", i), Body: string(l), EventSource: "aws:sqs"})
	}
	payload, _ := json.Marshal(batch)
	run := invokeBootstrap(t, account, [][]byte{payload}, env...)
	var titles []string
	for _, f := range run.findings {
		titles = append(titles, strings.SplitN(f, " count=", 2)[0])
	}
	slices.Sort(titles)
	if strings.Contains(run.logs, "IQoJb3JpZ2lu") {
		t.Error("a session token reached the function's logs")
	}
	if !strings.Contains(run.logs, `"message":"batch done"`) {
		t.Errorf("no summary line in the logs:\n%s", run.logs)
	}
	return titles
}

// TestBootstrapOrderAndDelivery runs the deploy artifact on the demo's batches delivered
// twice (nothing changes: the same findings, counts and no second email), and, in a second
// container over a fresh table, with one theft's calls held back and delivered last, as a
// dead-letter redrive would: that theft still gets its own finding, at its own time.
func TestBootstrapOrderAndDelivery(t *testing.T) {
	lines, err := os.ReadFile("../../events/demo/history.ndjson")
	if err != nil {
		t.Fatal(err)
	}
	all := bytes.Split(bytes.TrimSpace(lines), []byte("\n"))
	batchesOf := func(ls [][]byte, size int, prefix string) [][]byte {
		var out [][]byte
		for i := 0; i < len(ls); i += size {
			var b events.SQSEvent
			for j := i; j < min(i+size, len(ls)); j++ {
				b.Records = append(b.Records, events.SQSMessage{MessageId: fmt.Sprintf("%s-%d", prefix, j), Body: string(ls[j]), EventSource: "aws:sqs"})
			}
			p, _ := json.Marshal(b)
			out = append(out, p)
		}
		return out
	}

	once := batchesOf(all, 50, "m")
	twice := append(slices.Clone(once), batchesOf(all, 50, "m")...)
	first := invokeBootstrap(t, "210000000003", once)
	again := invokeBootstrap(t, "210000000004", twice)
	if diff := cmp.Diff(first.findings, again.findings); diff != "" {
		t.Errorf("delivered twice, findings changed (-once +twice):\n%s", diff)
	}
	if first.emails != len(first.findings) || again.emails != first.emails {
		t.Errorf("emails: %d once, %d twice, for %d findings", first.emails, again.emails, len(first.findings))
	}

	// The day-16 theft (three aws-cli calls at 2026-05-20T14:0x) arrives after everything.
	var theft, rest [][]byte
	for _, l := range all {
		if bytes.Contains(l, []byte("aws-cli")) && bytes.Contains(l, []byte(`"time":"2026-05-20T14:0`)) {
			theft = append(theft, l)
		} else {
			rest = append(rest, l)
		}
	}
	if len(theft) != 3 {
		t.Fatalf("found %d calls of the day-16 theft, want 3", len(theft))
	}
	late := invokeBootstrap(t, "210000000005", append(batchesOf(rest, 50, "m"), batchesOf(theft, 50, "late")...))

	// The cost of a full batch: 500 generated records (envelopes) an invocation.
	var buf bytes.Buffer
	if _, err := gen.Write(gen.Default(2500), &buf); err != nil {
		t.Fatal(err)
	}
	var envs [][]byte
	for _, l := range bytes.Split(bytes.TrimSpace(buf.Bytes()), []byte("\n")) {
		e, _ := gen.Envelope(l)
		envs = append(envs, e)
	}
	invokeBootstrap(t, "210000000006", batchesOf(envs, 500, "g"))
	// Late, the theft joins the finding of its period (the ISO week from 2026-05-18), which
	// the day-19 call opened: the same findings as delivered in order.
	if diff := cmp.Diff(storetest.ListsAsSets(first.findings), storetest.ListsAsSets(late.findings)); diff != "" {
		t.Errorf("the late theft changed the findings (-in order +late):\n%s", diff)
	}
	if late.emails != len(late.findings) {
		t.Errorf("%d emails for %d findings", late.emails, len(late.findings))
	}

	// Two containers decide the two halves of one theft at once: the first call, and the
	// two after it, each with the whole history before. One finding, one email.
	history := batchesOf(rest, 50, "m")
	raced := invokeContainers(t, "210000000007", [][][]byte{
		append(slices.Clone(history), batchesOf(theft[:1], 50, "a")...),
		append(slices.Clone(history), batchesOf(theft[1:], 50, "b")...),
	})
	if diff := cmp.Diff(storetest.ListsAsSets(first.findings), storetest.ListsAsSets(raced.findings)); diff != "" {
		t.Errorf("two containers on one theft (-one container +two):\n%s", diff)
	}
	if raced.emails != len(raced.findings) {
		t.Errorf("%d emails for %d findings", raced.emails, len(raced.findings))
	}
}

type bootstrapRun struct {
	findings map[string]string // id -> title, count, addresses, calls
	emails   int
	logs     string
}

// invokeBootstrap runs one container of the deploy artifact over a fresh table, hands it
// the payloads one invocation at a time, and returns what reached Security Hub and SNS.
func invokeBootstrap(t *testing.T, account string, payloads [][]byte, env ...string) bootstrapRun {
	t.Helper()
	return invokeContainers(t, account, [][][]byte{payloads}, env...)
}

// invokeContainers runs one container of the deploy artifact for each list of payloads,
// all at once over one fresh table, topic and Security Hub, as Lambda runs concurrent
// invocations.
func invokeContainers(t *testing.T, account string, containers [][][]byte, env ...string) bootstrapRun {
	t.Helper()
	endpoint := mototest.Endpoint(t)
	bin := build(t)
	cfg := mototest.Config(t, nil)
	table := mototest.Table(t, cfg)
	ctx := context.Background()
	topic, err := sns.NewFromConfig(cfg).CreateTopic(ctx, &sns.CreateTopicInput{Name: aws.String("bootstrap-" + account)})
	if err != nil {
		t.Fatal(err)
	}
	q := sqs.NewFromConfig(cfg)
	queue, err := q.CreateQueue(ctx, &sqs.CreateQueueInput{QueueName: aws.String("inbox-" + account)})
	if err != nil {
		t.Fatal(err)
	}
	qa, err := q.GetQueueAttributes(ctx, &sqs.GetQueueAttributesInput{QueueUrl: queue.QueueUrl, AttributeNames: []sqstypes.QueueAttributeName{sqstypes.QueueAttributeNameQueueArn}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sns.NewFromConfig(cfg).Subscribe(ctx, &sns.SubscribeInput{TopicArn: topic.TopicArn, Protocol: aws.String("sqs"), Endpoint: aws.String(qa.Attributes["QueueArn"])}); err != nil {
		t.Fatal(err)
	}
	securityhub.NewFromConfig(cfg).EnableSecurityHub(ctx, &securityhub.EnableSecurityHubInput{})

	var logs bytes.Buffer
	var logMu sync.Mutex
	var wg sync.WaitGroup
	var failed atomic.Bool
	for _, payloads := range containers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			api := &runtimeAPI{payloads: payloads, answer: make(chan string, len(payloads))}
			srv := httptest.NewServer(api)
			defer srv.Close()
			cmd := exec.Command(bin)
			cmd.Env = []string{
				"AWS_LAMBDA_RUNTIME_API=" + strings.TrimPrefix(srv.URL, "http://"),
				"AWS_ENDPOINT_URL=" + endpoint, "AWS_REGION=us-east-1", "AWS_ACCESS_KEY_ID=test", "AWS_SECRET_ACCESS_KEY=test",
				"AWS_EC2_METADATA_DISABLED=true", "AWS_LAMBDA_LOG_FORMAT=JSON", "AWS_LAMBDA_FUNCTION_NAME=outsider-detector",
				config.EnvTable + "=" + table, config.EnvSecurityAccount + "=" + account, config.EnvTopicARN + "=" + *topic.TopicArn,
				// Every finding in this run's security account: the demo's account is moto's
				// default one, which every run shares. Filing in member accounts is
				// pkg/pipeline's TestFiledInTheAffectedAccount.
				config.EnvFileInMembers + "=false",
			}
			cmd.Env = append(cmd.Env, env...)
			var out bytes.Buffer
			cmd.Stdout, cmd.Stderr = &out, &out
			started := time.Now()
			if err := cmd.Start(); err != nil {
				t.Error(err)
				failed.Store(true)
				return
			}
			defer func() {
				cmd.Process.Kill()
				cmd.Wait() // its output is all copied once it has exited
				logMu.Lock()
				logs.Write(out.Bytes())
				logMu.Unlock()
			}()
			for i := 0; ; i++ {
				api.mu.Lock()
				if i >= len(api.payloads) {
					api.mu.Unlock()
					break
				}
				sent := api.payloads[i]
				api.mu.Unlock()
				select {
				case answer := <-api.answer:
					if answer == `response: {"batchItemFailures":null}` || answer == `response: {"batchItemFailures":[]}` {
						continue
					}
					// Messages reported for retry (an email another container has
					// claimed and not marked sent yet) come back, as SQS redelivers them.
					var resp events.SQSEventResponse
					var batch events.SQSEvent
					if !strings.HasPrefix(answer, "response: ") || json.Unmarshal([]byte(strings.TrimPrefix(answer, "response: ")), &resp) != nil ||
						json.Unmarshal(sent, &batch) != nil || i > 10*len(payloads) {
						t.Errorf("answer %s", answer)
						failed.Store(true)
						return
					}
					again := events.SQSEvent{}
					for _, m := range batch.Records {
						if slices.ContainsFunc(resp.BatchItemFailures, func(f events.SQSBatchItemFailure) bool { return f.ItemIdentifier == m.MessageId }) {
							again.Records = append(again.Records, m)
						}
					}
					b, _ := json.Marshal(again)
					api.mu.Lock()
					api.payloads = append(api.payloads, b)
					api.mu.Unlock()
				case <-time.After(2 * time.Minute):
					t.Error("no answer from the function")
					failed.Store(true)
					return
				}
			}
			api.mu.Lock()
			if len(api.asked) > 1 {
				// The deploy artifact's cost: its cold start (config, clients, the embedded
				// ranges) to its first request for work, and the mean time of an invocation.
				t.Logf("init %s; %d invocations, %s each on average (moto on loopback)", api.asked[0].Sub(started).Round(time.Millisecond),
					len(api.asked)-1, (api.asked[len(api.asked)-1].Sub(api.asked[0]) / time.Duration(len(api.asked)-1)).Round(time.Millisecond))
			}
			api.mu.Unlock()
		}()
	}
	wg.Wait()
	if failed.Load() {
		t.Fatalf("logs:\n%s", logs.String())
	}
	run := bootstrapRun{findings: map[string]string{}}
	p := securityhub.NewGetFindingsPaginator(securityhub.NewFromConfig(cfg), &securityhub.GetFindingsInput{})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range page.Findings {
			if *f.AwsAccountId == account {
				pf := f.ProductFields
				run.findings[*f.Id] = fmt.Sprintf("%s count=%s from=%s calls=%s", *f.Title, pf["outsider/Count"], pf["outsider/SourceIPs"], pf["outsider/ApiCalls"])
			}
		}
	}
	for {
		out, err := q.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{QueueUrl: queue.QueueUrl, MaxNumberOfMessages: 10})
		if err != nil {
			t.Fatal(err)
		}
		if len(out.Messages) == 0 {
			break
		}
		for _, m := range out.Messages {
			run.emails++
			q.DeleteMessage(ctx, &sqs.DeleteMessageInput{QueueUrl: queue.QueueUrl, ReceiptHandle: m.ReceiptHandle})
		}
	}
	run.logs = logs.String()
	return run
}

// TestBootstrapBadConfig: a bad setting stops the cold start, naming the setting.
func TestBootstrapBadConfig(t *testing.T) {
	bin := build(t)
	api := &runtimeAPI{answer: make(chan string, 1)}
	srv := httptest.NewServer(api)
	defer srv.Close()
	cmd := exec.Command(bin)
	cmd.Env = []string{"AWS_LAMBDA_RUNTIME_API=" + strings.TrimPrefix(srv.URL, "http://"), "AWS_REGION=us-east-1",
		config.EnvSecurityAccount + "=12345", config.EnvDedup + "=soon"}
	out, err := cmd.CombinedOutput()
	if err == nil {
		t.Fatalf("the function started with a bad configuration:\n%s", out)
	}
	for _, name := range []string{config.EnvTable, config.EnvSecurityAccount, config.EnvDedup} {
		if !strings.Contains(string(out), name) {
			t.Errorf("the cold-start error does not name %s:\n%s", name, out)
		}
	}
}
