// Command detector is Outsider's detector. Deployed as the Lambda's bootstrap it takes SQS
// batches (or EventBridge events) of CloudTrail API calls; run as `detector replay` it
// replays CloudTrail files locally, through the same detection.
package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"time"

	"github.com/aws/aws-lambda-go/lambda"
	"github.com/aws/aws-lambda-go/lambdacontext"
	"github.com/aws/aws-sdk-go-v2/aws"
	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/securityhub"
	"github.com/aws/aws-sdk-go-v2/service/sns"

	"github.com/outsider-sec/outsider/pkg/asff"
	"github.com/outsider-sec/outsider/pkg/asn"
	"github.com/outsider-sec/outsider/pkg/awsid"
	"github.com/outsider-sec/outsider/pkg/config"
	"github.com/outsider-sec/outsider/pkg/detect"
	"github.com/outsider-sec/outsider/pkg/dynamo"
	"github.com/outsider-sec/outsider/pkg/hub"
	"github.com/outsider-sec/outsider/pkg/ipranges"
	"github.com/outsider-sec/outsider/pkg/notify"
	"github.com/outsider-sec/outsider/pkg/pipeline"
	"github.com/outsider-sec/outsider/pkg/refresh"
	"github.com/outsider-sec/outsider/pkg/replay"
)

const usage = `Usage: detector replay [flags] PATH...

Without arguments, inside AWS Lambda, it is the detector function.
Run 'detector replay -h' for the flags.
`

func main() {
	if len(os.Args) > 1 && os.Args[1] == "replay" {
		os.Exit(replay.Main(os.Args[2:], os.Stdin, os.Stdout, os.Stderr))
	}
	if len(os.Args) > 1 || os.Getenv("AWS_LAMBDA_RUNTIME_API") == "" {
		fmt.Fprint(os.Stderr, usage)
		os.Exit(replay.ExitUsage)
	}
	// JSON when the function's log format is JSON (the stack sets it), with the request id.
	log := lambdacontext.NewLogger()
	h, err := coldStart(context.Background(), log)
	if err != nil {
		// A bad setting stops the cold start, with the message naming it.
		log.Error("cold start failed", "error", err)
		os.Exit(1)
	}
	lambda.Start(h.Invoke)
}

// coldStart loads and validates the configuration and builds the clients, once.
func coldStart(ctx context.Context, log *slog.Logger) (*pipeline.Handler, error) {
	cfg, err := config.Load(os.Getenv)
	if err != nil {
		return nil, err
	}
	awsCfg, err := awsconfig.LoadDefaultConfig(ctx)
	if err != nil {
		return nil, fmt.Errorf("aws config: %w", err)
	}
	ranges := ipranges.NewCurrent(ipranges.Embedded())
	var asns *asn.DB
	var watcher *refresh.Watcher
	if !cfg.IPRanges.IsZero() || !cfg.ASNDB.IsZero() {
		s3c := s3.NewFromConfig(awsCfg)
		if !cfg.IPRanges.IsZero() {
			// What the refresher stored, checked at most every five minutes.
			watcher = &refresh.Watcher{S3: s3c, Bucket: cfg.IPRanges.Bucket, Key: cfg.IPRanges.Key, Ranges: ranges, Every: 5 * time.Minute}
			if err := watcher.Check(ctx); err != nil {
				log.Warn("could not load AWS's ip ranges from S3: the embedded snapshot stands", "error", err)
			}
		}
		if !cfg.ASNDB.IsZero() {
			b, err := get(ctx, s3c, cfg.ASNDB)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", config.EnvASNDB, err)
			}
			if asns, err = asn.FromBytes(b); err != nil {
				return nil, fmt.Errorf("%s: %w", config.EnvASNDB, err)
			}
		}
	}
	st := dynamo.New(dynamodb.NewFromConfig(awsCfg), cfg.Table)
	det, err := detect.New(cfg.Detect, st, ranges, asns)
	if err != nil {
		return nil, err
	}
	h := &pipeline.Handler{
		Detector: det,
		Store:    st,
		Hub:      hub.New(securityhub.NewFromConfig(awsCfg)),
		Notify:   notify.New(sns.NewFromConfig(awsCfg), cfg.TopicARN, cfg.Region),
		Product:  asff.Product{Partition: awsid.Partition(cfg.Region), Region: cfg.Region, Account: cfg.SecurityAccount},
		Log:      log,
		Metrics:  os.Stdout,
	}
	if watcher != nil {
		h.Ranges = watcher
	}
	return h, nil
}

func get(ctx context.Context, c *s3.Client, loc config.S3Location) ([]byte, error) {
	out, err := c.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(loc.Bucket), Key: aws.String(loc.Key)})
	if err != nil {
		return nil, fmt.Errorf("get %s: %w", loc, err)
	}
	defer out.Body.Close()
	var buf bytes.Buffer
	if _, err := io.Copy(&buf, out.Body); err != nil {
		return nil, fmt.Errorf("read %s: %w", loc, err)
	}
	return buf.Bytes(), nil
}
