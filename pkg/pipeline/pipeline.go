// Package pipeline is the Lambda's edge of the flow (pkg/flow): CloudTrail events in (an SQS
// batch, or one EventBridge event), the detector over the DynamoDB state, findings out to
// Security Hub, and one email per new finding; the messages to retry reported back to SQS.
// The Lambda and its tests run exactly this; only the clients differ.
package pipeline

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-sdk-go-v2/service/securityhub/types"
	"github.com/aws/smithy-go"

	"github.com/outsider-sec/outsider/pkg/asff"
	"github.com/outsider-sec/outsider/pkg/cloudtrail"
	"github.com/outsider-sec/outsider/pkg/detect"
	"github.com/outsider-sec/outsider/pkg/flow"
	"github.com/outsider-sec/outsider/pkg/hub"
	"github.com/outsider-sec/outsider/pkg/ipranges"
	"github.com/outsider-sec/outsider/pkg/silence"
)

// Importer sends findings to Security Hub (pkg/hub).
type Importer interface {
	Import(context.Context, []types.AwsSecurityFinding) error
}

// Notifier emails a new finding (pkg/notify).
type Notifier interface {
	Enabled() bool
	Publish(context.Context, detect.Finding) error
}

// Updater emails what is new in a finding emailed before (pkg/notify).
type Updater interface {
	PublishUpdate(ctx context.Context, f detect.Finding, newKeys, newSources []string) error
}

// Checker refreshes something before a batch (the AWS ranges: pkg/refresh.Watcher).
type Checker interface {
	Check(context.Context) error
}

// Handler runs batches through the detector. It is not safe for concurrent use: Lambda
// gives each container one invocation at a time.
type Handler struct {
	Detector *detect.Detector
	Store    detect.Store
	Hub      Importer
	Notify   Notifier
	Product  asff.Product
	Log      *slog.Logger
	Metrics  io.Writer         // CloudWatch Embedded Metric Format lines; nil: none
	Ranges   Checker           // reloads AWS's ranges when the refresher stored new ones; nil: none
	Heard    *silence.Register // when each account's records last arrived; nil: not kept
	// Member returns an importer that acts in a member account, through the role its
	// forwarder stack creates: a finding is filed in the account it is about. nil: every
	// finding is filed in the security account (Product.Account).
	Member func(account string) Importer
	// EmailSeverity is the lowest severity emailed ("": every finding).
	EmailSeverity string
	Now           func() time.Time

	once      sync.Once
	refused   int            // 1 when the last look at the stored ranges refused them
	filedHere int            // findings of member accounts filed in the security account this invocation
	accounts  map[string]int // records of this invocation by recipient account
	flow      *flow.Flow
	mail      *flow.Mailer
}

// Summary is what one invocation did: the summary log line and the metrics.
type Summary = flow.Summary

// DeadlineMargin is the time kept before the invocation's deadline to write state, import
// findings and answer: records not started by then are reported as batch item failures.
var DeadlineMargin = 10 * time.Second

// ErrDeadline fails the messages a batch had no time for; SQS delivers them again.
var ErrDeadline = flow.ErrDeadline

// HandleSQS processes an SQS batch whose bodies are EventBridge events, and reports the
// messages that must be retried (ReportBatchItemFailures).
// https://docs.aws.amazon.com/lambda/latest/dg/services-sqs-errorhandling.html
func (h *Handler) HandleSQS(ctx context.Context, ev events.SQSEvent) (events.SQSEventResponse, error) {
	msgs := make([]*flow.Input, len(ev.Records))
	for i, r := range ev.Records {
		msgs[i] = h.parse(ctx, r.MessageId, []byte(r.Body))
	}
	h.run(ctx, msgs)
	var resp events.SQSEventResponse
	for _, m := range msgs {
		if m.Err != nil {
			resp.BatchItemFailures = append(resp.BatchItemFailures, events.SQSBatchItemFailure{ItemIdentifier: m.ID})
		}
	}
	return resp, nil
}

// HandleEvent processes one EventBridge event delivered directly; an error makes Lambda
// retry it.
func (h *Handler) HandleEvent(ctx context.Context, ev json.RawMessage) error {
	m := h.parse(ctx, "event", ev)
	h.run(ctx, []*flow.Input{m})
	return m.Err
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

// parse reads a message's record: an EventBridge envelope, nothing else (a bare record,
// an array or a log file in the queue was put there by someone other than the rules, and
// is forged). Malformed values are counted and logged, never retried: a retry would not
// make them valid.
func (h *Handler) parse(ctx context.Context, id string, body []byte) *flow.Input {
	in := &flow.Input{ID: id}
	cloudtrail.ParseEnvelope(body, func(r *cloudtrail.Record) {
		if h.accounts == nil {
			h.accounts = map[string]int{}
		}
		h.accounts[r.RecipientAccount]++
		in.Records = append(in.Records, r)
	}, func(err error) {
		in.Malformed = append(in.Malformed, cloudtrail.Reason(err))
		h.Log.WarnContext(ctx, "skipped a malformed record", "message", id, "reason", cloudtrail.Reason(err))
	})
	return in
}

func (h *Handler) run(ctx context.Context, msgs []*flow.Input) {
	start := h.now()
	h.refused, h.filedHere = 0, 0
	if h.Ranges != nil {
		if err := h.Ranges.Check(ctx); err != nil {
			if errors.Is(err, ipranges.ErrImplausible) {
				h.refused = 1 // an alarm: someone wrote a file that would blind the detector
			}
			// The ranges in use stay; a stale range list is no reason to stop detecting.
			h.Log.WarnContext(ctx, "could not reload AWS's ip ranges", "error", err)
		}
	}
	h.once.Do(func() {
		h.mail = &flow.Mailer{Store: h.Store, Send: h.Notify.Publish, Now: h.Now, MinSeverity: h.EmailSeverity}
		if u, ok := h.Notify.(Updater); ok {
			h.mail.SendUpdate = u.PublishUpdate
		}
		h.flow = &flow.Flow{Detector: h.Detector, Store: h.Store, Sink: sink{h}, Log: h.Log}
	})
	h.flow.Margin = DeadlineMargin // read each time: tests change it
	sum := h.flow.Run(ctx, msgs)
	if h.Heard != nil && len(h.accounts) > 0 {
		// A failed write is tried again by the next invocation: a silence is hours.
		if err := h.Heard.Heard(ctx, slices.Sorted(maps.Keys(h.accounts)), h.now()); err != nil {
			h.Log.WarnContext(ctx, "could not record which accounts were heard from", "error", err)
		}
	}
	var errs []error
	for _, m := range msgs {
		if m.Err != nil {
			errs = append(errs, m.Err)
		}
	}
	h.report(ctx, sum, h.now().Sub(start), errors.Join(errs...))
}

// build makes the ASFF of changes as product's account files them; filedHere, when not
// empty, marks findings of another account filed in the security account.
func build(cs []detect.Change, product asff.Product, filedHere string) []types.AwsSecurityFinding {
	fs := make([]types.AwsSecurityFinding, len(cs))
	for i, c := range cs {
		fs[i] = asff.ForChange(c, product)
		if filedHere != "" {
			if fs[i].ProductFields == nil {
				fs[i].ProductFields = map[string]string{}
			}
			fs[i].ProductFields[asff.FieldFiledIn] = filedHere
		}
	}
	return fs
}

// refused reports whether an import failed because the member account would not take it:
// its importer role is missing or refuses the detector (STS AccessDenied), or Security
// Hub is not enabled there. Throttling and server errors are not: they are retried.
func refused(err error) bool {
	switch errorCode(err) {
	case "AccessDenied", "AccessDeniedException", "InvalidAccessException", "InvalidClientTokenId", "UnrecognizedClientException", "NoSuchEntity":
		return true
	}
	return false
}

func errorCode(err error) string {
	var ae smithy.APIError
	if errors.As(err, &ae) {
		return ae.ErrorCode()
	}
	return ""
}

// sink imports the changed findings into Security Hub and emails the new ones: once
// imported, through the flow's claims.
type sink struct{ h *Handler }

func (s sink) Publish(ctx context.Context, changes []detect.Change) (flow.Published, error) {
	h := s.h
	pub := flow.Published{Failed: map[string]error{}}
	if err := s.imports(ctx, changes, pub.Failed, false); err != nil {
		return pub, err
	}
	latest := s.settle(ctx, changes, pub.Failed)
	if !h.Notify.Enabled() {
		return pub, nil
	}
	for _, f := range latest {
		if pub.Failed[f.ID] != nil {
			continue // emailed when its import succeeds
		}
		sent, err := h.mail.Mail(ctx, f)
		if err != nil {
			pub.Failed[f.ID] = err
		} else if sent {
			pub.Emails++
		}
	}
	return pub, nil
}

// maxSettle bounds the rounds of settle: each is a read of every finding imported, and
// an import of those another container changed meanwhile.
const maxSettle = 4

// settle reads back the findings imported and imports again each one that another
// container changed in the table meanwhile; it returns the findings in their latest
// version. Two containers that update one finding at once each import the version they
// wrote, in either order: Security Hub keeps the later UpdatedAt, but a server (or a
// proxy) where the last import wins would keep the older one. After this, the last
// import of a finding is never older than the table's version when it landed, and a later
// version is imported by the container that writes it. A finding that cannot be read
// back fails its inputs: their redelivery imports its stored version.
func (s sink) settle(ctx context.Context, changes []detect.Change, failed map[string]error) []detect.Finding {
	h := s.h
	latest := make([]detect.Finding, len(changes))
	var check []int // indexes of latest to read back
	for i, c := range changes {
		latest[i] = c.Finding
		if failed[c.Finding.ID] == nil {
			check = append(check, i)
		}
	}
	for round := 0; round < maxSettle && len(check) > 0; round++ {
		var again []detect.Change
		var changed []int
		for _, i := range check {
			cur, found, err := h.Detector.Stored(ctx, latest[i])
			switch {
			case err != nil:
				failed[latest[i].ID] = err
			case found && cur.Revised.After(latest[i].Revised):
				latest[i] = cur
				again = append(again, detect.Change{Finding: cur})
				changed = append(changed, i)
			}
		}
		if len(again) == 0 {
			break
		}
		if err := s.imports(ctx, again, failed, true); err != nil {
			for _, c := range again {
				failed[c.Finding.ID] = err
			}
			break
		}
		check = slices.DeleteFunc(changed, func(i int) bool { return failed[latest[i].ID] != nil })
	}
	return latest
}

// imports files the changes in Security Hub, each in the account it is about, and notes
// in failed the findings it refused one by one. An error is the whole import's. again: a
// later version of findings imported already (not counted again in the metrics).
func (s sink) imports(ctx context.Context, changes []detect.Change, failed map[string]error, again bool) error {
	h := s.h
	// Each finding in the account it is about (DESIGN §6), as GuardDuty files its own: the
	// member account's Security Hub, through its importer role.
	byAccount := map[string][]detect.Change{}
	for _, c := range changes {
		a := c.Finding.Account
		if h.Member == nil || a == "" || a == h.Product.Account {
			a = h.Product.Account
		}
		byAccount[a] = append(byAccount[a], c)
	}
	for _, account := range slices.Sorted(maps.Keys(byAccount)) {
		cs := byAccount[account]
		var err error
		if account == h.Product.Account {
			err = h.Hub.Import(ctx, build(cs, h.Product, ""))
		} else {
			prod := h.Product
			prod.Account = account
			err = h.Member(account).Import(ctx, build(cs, prod, ""))
			if refused(err) {
				// The member's role is missing, or Security Hub is off there: filed in the
				// security account, marked so (a field, a metric), never dropped.
				h.Log.WarnContext(ctx, "findings filed in the security account: the member account's importer role is missing or refused",
					"account", account, "findings", len(cs), "error", err)
				if !again {
					h.filedHere += len(cs)
				}
				err = h.Hub.Import(ctx, build(cs, h.Product, fmt.Sprintf("security account: account %s refused the import (%s)", account, errorCode(err))))
			}
		}
		if err != nil {
			var ie *hub.ImportError
			if !errors.As(err, &ie) {
				return err
			}
			for id := range ie.Failed {
				failed[id] = err
			}
		}
	}
	return nil
}

func (h *Handler) now() time.Time {
	if h.Now != nil {
		return h.Now()
	}
	return time.Now()
}

// report writes the invocation's one summary line and its metrics.
func (h *Handler) report(ctx context.Context, s Summary, took time.Duration, err error) {
	defer clear(h.accounts) // counted per invocation
	attrs := []any{
		"messages", s.Inputs, "failed", s.Failed, "records", s.Records, "malformed", s.MalformedTotal(), "forged", s.Malformed[cloudtrail.ReasonForged],
		"outside", s.Outside, "lambdaTokensOutside", s.LambdaUsed, "withheldForActivation", s.Withheld, "findingsNew", s.Created, "findingsUpdated", s.Updated,
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
	// Forged: messages not put by the rules (DESIGN §8), alarmed on by the stack.
	// WithheldForActivation: calls with a Lambda's token from outside that raised nothing
	// because their account is in its activation period (a new deployment's first days).
	// FiledInSecurityAccount: findings of a member account whose importer role is missing
	// or refused, filed in the security account instead.
	names := []string{"Records", "Malformed", "Forged", "Outside", "LambdaTokensOutside", "WithheldForActivation", "FindingsNew", "FindingsUpdated", "Emails", "FailedMessages", "StoreCalls", "RangesRefused", "FiledInSecurityAccount"}
	values := []int{s.Records, s.MalformedTotal(), s.Malformed[cloudtrail.ReasonForged], s.Outside, s.LambdaUsed, s.Withheld, s.Created, s.Updated, s.Emails, s.Failed, s.StoreCalls, h.refused, h.filedHere}
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
	// Records by account: the stack alarms on an account whose records stop (DESIGN §8,
	// "nobody goes quiet unseen"). One line per account of the batch.
	for _, a := range slices.Sorted(maps.Keys(h.accounts)) {
		b, _ := json.Marshal(map[string]any{
			"Account": a, "AccountRecords": h.accounts[a],
			"_aws": map[string]any{
				"Timestamp":         h.now().UnixMilli(),
				"CloudWatchMetrics": []any{map[string]any{"Namespace": "Outsider", "Dimensions": [][]string{{"Account"}}, "Metrics": []any{map[string]string{"Name": "AccountRecords", "Unit": "Count"}}}},
			},
		})
		h.Metrics.Write(append(b, '\n'))
	}
}
