package refresh

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/aws/aws-lambda-go/events"
)

// Job is work the refresher's schedule runs besides the ranges (the Lambda inventory, the
// ASN database).
type Job interface {
	Run(ctx context.Context, log *slog.Logger) error
}

// Handler is the refresher function: an SNS notification (AmazonIpSpaceChanged) refreshes
// the ranges; a scheduled event refreshes them and runs the jobs.
type Handler struct {
	Ranges  *Refresher
	Jobs    []Job
	Log     *slog.Logger
	Metrics io.Writer // CloudWatch Embedded Metric Format lines; nil: none
}

// Handle takes whatever Lambda hands the function. An error makes Lambda retry it.
func (h *Handler) Handle(ctx context.Context, payload json.RawMessage) error {
	var sns events.SNSEvent
	var notices []*Notice
	if json.Unmarshal(payload, &sns) == nil && len(sns.Records) > 0 {
		for _, rec := range sns.Records {
			n, err := ParseNotice(rec.SNS.Message)
			if err != nil {
				h.Log.WarnContext(ctx, "ignored a notification", "error", err)
				continue
			}
			notices = append(notices, &n)
		}
	}
	var errs []error
	if len(notices) == 0 {
		notices = []*Notice{nil} // the schedule
		for _, j := range h.Jobs {
			if err := j.Run(ctx, h.Log); err != nil {
				errs = append(errs, err)
			}
		}
	}
	for _, n := range notices {
		res, err := h.Ranges.Run(ctx, n)
		if err != nil {
			errs = append(errs, err)
			h.Log.ErrorContext(ctx, "ip-ranges.json not stored", "error", err)
			if errors.Is(err, ErrInvalid) {
				// A refused file is an alarm (the stack's RangesRefusedAlarm), not
				// only a log line: someone may be trying to blind the detector.
				h.metric("RangesRefused", 1)
			}
			continue
		}
		h.Log.InfoContext(ctx, "ip-ranges.json checked", "stored", res.Stored, "syncToken", res.SyncToken, "prefixes", res.Prefixes, "reason", res.Reason)
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("refresher: %w", err) // Lambda retries asynchronous invocations
	}
	return nil
}

// ASNJob converts the ASN tables once a day (Every), on the schedule.
type ASNJob struct {
	*ASNConverter
	Every time.Duration
}

// Run implements Job.
func (j ASNJob) Run(ctx context.Context, log *slog.Logger) error {
	due, err := j.Due(ctx, time.Now(), j.Every)
	if err != nil || !due {
		return err
	}
	n, err := j.ASNConverter.Run(ctx)
	log.InfoContext(ctx, "ASN database converted", "bytes", n, "error", err)
	return err
}

func (h *Handler) metric(name string, v int) {
	if h.Metrics != nil {
		WriteMetric(h.Metrics, name, v, time.Now())
	}
}

// WriteMetric writes one CloudWatch Embedded Metric Format line, namespace Outsider: the
// refresher's metrics (its jobs' too) that the stack alarms on.
// https://docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/CloudWatch_Embedded_Metric_Format_Specification.html
func WriteMetric(w io.Writer, name string, v int, at time.Time) {
	b, _ := json.Marshal(map[string]any{
		name: v,
		"_aws": map[string]any{
			"Timestamp":         at.UnixMilli(),
			"CloudWatchMetrics": []any{map[string]any{"Namespace": "Outsider", "Dimensions": [][]string{{}}, "Metrics": []any{map[string]string{"Name": name, "Unit": "Count"}}}},
		},
	})
	w.Write(append(b, '\n'))
}
