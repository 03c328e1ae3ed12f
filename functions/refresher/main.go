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
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/outsider-sec/outsider/pkg/awsid"
	"github.com/outsider-sec/outsider/pkg/config"
	"github.com/outsider-sec/outsider/pkg/dynamo"
	"github.com/outsider-sec/outsider/pkg/inventory"
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
	var inv func(context.Context) error
	if len(cfg.Accounts) > 0 {
		st := dynamo.New(dynamodb.NewFromConfig(awsCfg), cfg.Table)
		client := inventory.ClientFor(awsCfg, cfg.SecurityAccount, awsid.Partition(awsCfg.Region))
		inv = func(ctx context.Context) error {
			var errs []error
			for _, a := range cfg.Accounts {
				n, err := inventory.Refresh(ctx, st, client, a, cfg.Regions, time.Now(), 2*time.Hour)
				if err != nil {
					errs = append(errs, err)
					continue
				}
				log.InfoContext(ctx, "inventory kept", "account", a, "functions", n)
			}
			return errors.Join(append(errs, st.Flush(ctx))...)
		}
	}
	if len(cfg.ASNSources) > 0 {
		conv := &refresh.ASNConverter{Sources: cfg.ASNSources, S3: r.S3, Bucket: cfg.ASNDB.Bucket, Key: cfg.ASNDB.Key}
		prev := inv
		inv = func(ctx context.Context) error {
			var errs []error
			if prev != nil {
				errs = append(errs, prev(ctx))
			}
			if due, err := conv.Due(ctx, time.Now(), 24*time.Hour); err != nil {
				errs = append(errs, err)
			} else if due {
				n, err := conv.Run(ctx)
				errs = append(errs, err)
				log.InfoContext(ctx, "ASN database converted", "bytes", n, "error", err)
			}
			return errors.Join(errs...)
		}
	}
	lambda.Start(handler(r, inv, log))
}

// handler takes an SNS notification (AmazonIpSpaceChanged) or a scheduled event; the
// schedule also runs hourly, when set, the Lambda inventory and the daily ASN conversion.
func handler(r *refresh.Refresher, inv func(context.Context) error, log *slog.Logger) func(context.Context, json.RawMessage) error {
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
		var errs []error
		if len(notices) == 0 {
			notices = []*refresh.Notice{nil} // the schedule
			if inv != nil {
				if err := inv(ctx); err != nil {
					errs = append(errs, err)
					log.ErrorContext(ctx, "inventory not refreshed", "error", err)
				}
			}
		}
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
