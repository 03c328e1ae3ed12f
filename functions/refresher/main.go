// Command refresher keeps AWS's ip-ranges.json current in S3 for the detector: it runs on
// a schedule and on AWS's AmazonIpSpaceChanged notification.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-lambda-go/lambda"
	"github.com/aws/aws-lambda-go/lambdacontext"
	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/outsider-sec/outsider/pkg/config"
	"github.com/outsider-sec/outsider/pkg/refresh"
)

func main() {
	log := lambdacontext.NewLogger()
	cfg, err := config.LoadRefresher(os.Getenv)
	if err != nil {
		log.Error("cold start failed", "error", err)
		os.Exit(1)
	}
	awsCfg, err := awsconfig.LoadDefaultConfig(context.Background())
	if err != nil {
		log.Error("cold start failed", "error", err)
		os.Exit(1)
	}
	r := &refresh.Refresher{
		HTTP: &http.Client{Timeout: 30 * time.Second}, URL: cfg.URL,
		S3: s3.NewFromConfig(awsCfg), Bucket: cfg.Ranges.Bucket, Key: cfg.Ranges.Key,
	}
	lambda.Start(handler(r, log))
}

// handler takes an SNS notification (AmazonIpSpaceChanged) or a scheduled event.
func handler(r *refresh.Refresher, log *slog.Logger) func(context.Context, json.RawMessage) error {
	return func(ctx context.Context, payload json.RawMessage) error {
		var sns events.SNSEvent
		var notices []*refresh.Notice
		if json.Unmarshal(payload, &sns) == nil && len(sns.Records) > 0 {
			for _, rec := range sns.Records {
				n, err := refresh.ParseNotice(rec.SNS.Message)
				if err != nil {
					log.WarnContext(ctx, "ignored a notification", "error", err)
					continue
				}
				notices = append(notices, &n)
			}
		}
		if len(notices) == 0 {
			notices = []*refresh.Notice{nil} // the schedule
		}
		var errs []error
		for _, n := range notices {
			res, err := r.Run(ctx, n)
			if err != nil {
				errs = append(errs, err)
				log.ErrorContext(ctx, "ip-ranges.json not stored", "error", err)
				continue
			}
			log.InfoContext(ctx, "ip-ranges.json checked", "stored", res.Stored, "syncToken", res.SyncToken, "prefixes", res.Prefixes, "reason", res.Reason)
		}
		if err := errors.Join(errs...); err != nil {
			return fmt.Errorf("refresher: %w", err) // Lambda retries asynchronous invocations
		}
		return nil
	}
}
