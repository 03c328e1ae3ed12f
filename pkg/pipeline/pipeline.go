// Package pipeline is the detector's flow in AWS: CloudTrail events in (an SQS batch, or one
// EventBridge event), the detector over the DynamoDB state, findings out to Security Hub, and
// one email per new finding. The Lambda and its tests run exactly this; only the clients
// differ.
package pipeline

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-sdk-go-v2/service/securityhub/types"

	"github.com/outsider-sec/outsider/pkg/asff"
	"github.com/outsider-sec/outsider/pkg/cloudtrail"
	"github.com/outsider-sec/outsider/pkg/detect"
	"github.com/outsider-sec/outsider/pkg/hub"
)

// Store is the detector's state with gathered writes (pkg/dynamo).
type Store interface {
	detect.Store
	Flush(context.Context) error
}

// Importer sends findings to Security Hub (pkg/hub).
type Importer interface {
	Import(context.Context, []types.AwsSecurityFinding) error
}

// Notifier emails a new finding (pkg/notify).
type Notifier interface {
	Enabled() bool
	Publish(context.Context, detect.Finding) error
}

// Checker refreshes something before a batch (the AWS ranges: pkg/refresh.Watcher).
type Checker interface {
	Check(context.Context) error
}

// Handler runs batches through the detector. It is not safe for concurrent use: Lambda
// gives each container one invocation at a time.
type Handler struct {
	Detector *detect.Detector
	Store    Store
	Hub      Importer
	Notify   Notifier
	Product  asff.Product
	Log      *slog.Logger
	Metrics  io.Writer // CloudWatch Embedded Metric Format lines; nil: none
	Ranges   Checker   // reloads AWS's ranges when the refresher stored new ones; nil: none
	Now      func() time.Time

	once   sync.Once
	worker string
}

// Summary is what one invocation did: the summary log line and the metrics.
type Summary struct {
	Messages   int
	Failed     int
	Records    int
	Malformed  int
	Outside    int
	LambdaUsed int
	Created    int
	Updated    int
	Emails     int
	StoreCalls int
	Deferred   int // records left for a redelivery: the deadline was near
}

// DeadlineMargin is the time kept before the invocation's deadline to write state, import
// findings and answer: records not started by then are reported as batch item failures.
var DeadlineMargin = 10 * time.Second

// ErrDeadline fails the messages a batch had no time for; SQS delivers them again.
var ErrDeadline = errors.New("pipeline: not processed before the invocation's deadline")

// keyNotified marks a finding whose email went out (a conditional claim: two workers
// seeing the same new finding send one email).
const keyNotified = "notify#"

type message struct {
	id       string
	body     []byte
	failed   error
	findings map[string]bool
}

// HandleSQS processes an SQS batch whose bodies are EventBridge events, and reports the
// messages that must be retried (ReportBatchItemFailures).
// https://docs.aws.amazon.com/lambda/latest/dg/services-sqs-errorhandling.html
func (h *Handler) HandleSQS(ctx context.Context, ev events.SQSEvent) (events.SQSEventResponse, error) {
	msgs := make([]*message, len(ev.Records))
	for i, r := range ev.Records {
		msgs[i] = &message{id: r.MessageId, body: []byte(r.Body)}
	}
	h.run(ctx, msgs)
	var resp events.SQSEventResponse
	for _, m := range msgs {
		if m.failed != nil {
			resp.BatchItemFailures = append(resp.BatchItemFailures, events.SQSBatchItemFailure{ItemIdentifier: m.id})
		}
	}
	return resp, nil
}

// HandleEvent processes one EventBridge event delivered directly; an error makes Lambda
// retry it.
func (h *Handler) HandleEvent(ctx context.Context, ev json.RawMessage) error {
	m := &message{id: "event", body: ev}
	h.run(ctx, []*message{m})
	return m.failed
}

// Invoke takes whatever Lambda hands the function: an SQS batch or an EventBridge event.
func (h *Handler) Invoke(ctx context.Context, payload json.RawMessage) (any, error) {
	var probe struct {
		Records []struct {
			EventSource string `json:"eventSource"`
		} `json:"Records"`
	}
	if json.Unmarshal(payload, &probe) == nil && len(probe.Records) > 0 && probe.Records[0].EventSource == "aws:sqs" {
		var ev events.SQSEvent
		if err := json.Unmarshal(payload, &ev); err != nil {
			return nil, fmt.Errorf("pipeline: SQS event: %w", err)
		}
		return h.HandleSQS(ctx, ev)
	}
	return nil, h.HandleEvent(ctx, payload)
}

func (h *Handler) run(ctx context.Context, msgs []*message) {
	start := h.now()
	if h.Ranges != nil {
		if err := h.Ranges.Check(ctx); err != nil {
			// The ranges in use stay; a stale range list is no reason to stop detecting.
			h.Log.WarnContext(ctx, "could not reload AWS's ip ranges", "error", err)
		}
	}
	before := h.Detector.Stats
	sum := Summary{Messages: len(msgs)}
	// The batch's records are decided in event-time order, whatever order SQS gave the
	// messages in: learning needs order (an AssumeRole before the calls made with its key).
	type item struct {
		m *message
		r *cloudtrail.Record
	}
	var items []item
	for _, m := range msgs {
		m.findings = map[string]bool{}
		cloudtrail.ParseValue(m.body, func(r *cloudtrail.Record) {
			sum.Records++
			items = append(items, item{m, r})
		}, func(err error) {
			// Counted and logged, never retried: a retry would not make it valid.
			sum.Malformed++
			h.Log.WarnContext(ctx, "skipped a malformed record", "message", m.id, "reason", cloudtrail.Reason(err))
		})
	}
	slices.SortStableFunc(items, func(a, b item) int { return a.r.Time.Compare(b.r.Time) })
	deadline, hasDeadline := ctx.Deadline()
	for i, it := range items {
		m := it.m
		if m.failed != nil {
			continue
		}
		if hasDeadline && i%64 == 0 && time.Until(deadline) < DeadlineMargin {
			// Stop taking records while there is time to write what was decided and
			// answer: the messages not yet done are retried, not timed out as a batch.
			for _, rest := range items[i:] {
				if rest.m.failed == nil {
					rest.m.failed = ErrDeadline
				}
			}
			sum.Deferred = len(items) - i
			break
		}
		if err := h.Detector.Process(ctx, it.r); err != nil {
			m.failed = err
			continue
		}
		if id := h.Detector.Touched(); id != "" {
			m.findings[id] = true
		}
	}
	failAll := func(err error) {
		for _, m := range msgs {
			if m.failed == nil {
				m.failed = err
			}
		}
	}
	failFinding := func(id string, err error) {
		for _, m := range msgs {
			if m.failed == nil && m.findings[id] {
				m.failed = err
			}
		}
	}
	changes, err := h.Detector.Flush(ctx)
	if err == nil {
		err = h.Store.Flush(ctx)
	}
	if err != nil {
		failAll(err)
	} else {
		h.publish(ctx, changes, failFinding, failAll, &sum)
	}

	st := h.Detector.Stats
	sum.Outside = st.Outside - before.Outside
	sum.LambdaUsed = st.LambdaUsed - before.LambdaUsed
	sum.Created = st.Created - before.Created
	sum.Updated = st.Updated - before.Updated
	sum.StoreCalls = (st.StoreReads + st.StoreWrites + st.StoreClaims) - (before.StoreReads + before.StoreWrites + before.StoreClaims)
	var errs []error
	for _, m := range msgs {
		if m.failed != nil {
			sum.Failed++
			errs = append(errs, m.failed)
		}
	}
	h.report(ctx, sum, h.now().Sub(start), errors.Join(errs...))
}

// publish imports the changed findings and emails the new ones.
func (h *Handler) publish(ctx context.Context, changes []detect.Change, failFinding func(string, error), failAll func(error), sum *Summary) {
	if len(changes) == 0 {
		return
	}
	fs := make([]types.AwsSecurityFinding, len(changes))
	for i, c := range changes {
		fs[i] = asff.Build(c.Finding, h.Product)
	}
	imported := map[string]bool{}
	for _, c := range changes {
		imported[c.Finding.ID] = true
	}
	if err := h.Hub.Import(ctx, fs); err != nil {
		var ie *hub.ImportError
		if !errors.As(err, &ie) {
			failAll(err)
			return
		}
		for id := range ie.Failed {
			failFinding(id, err)
			imported[id] = false
		}
	}
	if !h.Notify.Enabled() {
		return
	}
	changed := false
	for _, c := range changes {
		f := c.Finding
		if !imported[f.ID] {
			continue // emailed when its import succeeds
		}
		keep := f.WindowStart.Add(90 * 24 * time.Hour)
		won, err := h.claimEmail(ctx, keyNotified+f.ID, f.WindowStart, keep)
		if err != nil {
			failFinding(f.ID, err)
			continue
		}
		if !won {
			continue // emailed already, or being emailed, by this worker or another
		}
		if err := h.Notify.Publish(ctx, f); err != nil {
			// Give the claim back so that the retry sends it.
			h.Store.Put(ctx, keyNotified+f.ID, []byte(`{}`), time.Unix(1, 0))
			changed = true
			failFinding(f.ID, err)
			continue
		}
		h.Store.Put(ctx, keyNotified+f.ID, notifiedValue, keep)
		changed = true
		sum.Emails++
	}
	if changed {
		if err := h.Store.Flush(ctx); err != nil {
			// Kept in the store's memory, and written with its next batch.
			h.Log.WarnContext(ctx, "notification marks not written yet", "error", err)
		}
	}
}

// emailLease is how long a claim on an email holds without a sent mark: a container that
// died between its claim and the send leaves a claim that the next delivery takes over
// once the lease has passed. Longer than any invocation (Lambda's limit is 15 minutes).
const emailLease = 16 * time.Minute

// emailClaim is the value of a claim on a finding's email.
type emailClaim struct {
	By   string `json:"claimedBy,omitempty"` // the worker
	At   int64  `json:"at,omitempty"`        // wall time of the claim, Unix seconds
	Sent bool   `json:"sent,omitempty"`
}

// claimEmail claims the right to send a finding's email: a conditional write that one
// worker wins; a claim left by a worker that died unsent is taken over after emailLease.
func (h *Handler) claimEmail(ctx context.Context, key string, windowStart, keep time.Time) (bool, error) {
	mine, _ := json.Marshal(emailClaim{By: h.nonce(), At: h.now().Unix()})
	won, err := h.Store.Claim(ctx, key, mine, windowStart, keep)
	if err != nil || won {
		return won, err
	}
	cur, ok, err := h.Store.Get(ctx, key, windowStart)
	if err != nil || !ok {
		return false, err
	}
	var c emailClaim
	switch {
	case json.Unmarshal(cur, &c) != nil || c.Sent:
		return false, nil
	case c.By == h.nonce():
		return true, nil // our own claim, whose answer was lost
	case h.now().Sub(time.Unix(c.At, 0)) < emailLease:
		return false, nil // another worker is sending it
	}
	return h.Store.Swap(ctx, key, cur, mine, keep)
}

// nonce is this worker's name in its claims.
func (h *Handler) nonce() string {
	h.once.Do(func() {
		var b [16]byte
		rand.Read(b[:])
		h.worker = fmt.Sprintf("%x", b)
	})
	return h.worker
}

// notifiedValue marks a finding whose email went out.
var notifiedValue = []byte(`{"sent":true}`)

func (h *Handler) now() time.Time {
	if h.Now != nil {
		return h.Now()
	}
	return time.Now()
}

// report writes the invocation's one summary line and its metrics.
func (h *Handler) report(ctx context.Context, s Summary, took time.Duration, err error) {
	attrs := []any{
		"messages", s.Messages, "failed", s.Failed, "records", s.Records, "malformed", s.Malformed,
		"outside", s.Outside, "lambdaTokensOutside", s.LambdaUsed, "findingsNew", s.Created, "findingsUpdated", s.Updated,
		"emails", s.Emails, "storeCalls", s.StoreCalls, "deferred", s.Deferred, "durationMs", took.Milliseconds(),
	}
	if err != nil {
		h.Log.ErrorContext(ctx, "batch done, some messages will be retried", append(attrs, "error", err)...)
	} else {
		h.Log.InfoContext(ctx, "batch done", attrs...)
	}
	if h.Metrics == nil {
		return
	}
	// CloudWatch Embedded Metric Format: a log line CloudWatch turns into metrics.
	// https://docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/CloudWatch_Embedded_Metric_Format_Specification.html
	names := []string{"Records", "Malformed", "Outside", "LambdaTokensOutside", "FindingsNew", "FindingsUpdated", "Emails", "FailedMessages", "StoreCalls"}
	values := []int{s.Records, s.Malformed, s.Outside, s.LambdaUsed, s.Created, s.Updated, s.Emails, s.Failed, s.StoreCalls}
	metrics := make([]map[string]string, len(names))
	line := map[string]any{}
	for i, n := range names {
		metrics[i] = map[string]string{"Name": n, "Unit": "Count"}
		line[n] = values[i]
	}
	line["_aws"] = map[string]any{
		"Timestamp":         h.now().UnixMilli(),
		"CloudWatchMetrics": []any{map[string]any{"Namespace": "Outsider", "Dimensions": [][]string{{}}, "Metrics": metrics}},
	}
	b, _ := json.Marshal(line)
	h.Metrics.Write(append(b, '\n'))
}
