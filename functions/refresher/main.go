// Command refresher keeps AWS's ip-ranges.json current in S3 for the detector: it runs on
// a schedule and on AWS's AmazonIpSpaceChanged notification. The schedule also reports the
// accounts gone quiet, keeps the Lambda inventory of the member accounts and converts the
// ASN tables, when configured.
package main

import (
	"context"
	"net/http"
	"os"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"

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
	"github.com/outsider-sec/outsider/pkg/silence"
)

func main() {
	log := lambdacontext.NewLogger()
	cfg, err := config.LoadRefresher(os.Getenv)
	var awsCfg aws.Config
	if err == nil {
		awsCfg, err = awsconfig.LoadDefaultConfig(context.Background())
	}
	if err != nil {
		log.Error("cold start failed", "error", err)
		os.Exit(1)
	}
	s3c := s3.NewFromConfig(awsCfg)
	h := &refresh.Handler{Log: log, Metrics: os.Stdout, Ranges: &refresh.Refresher{
		HTTP: &http.Client{Timeout: 30 * time.Second}, URL: cfg.URL, S3: s3c, Bucket: cfg.Ranges.Bucket, Key: cfg.Ranges.Key,
	}}
	if len(cfg.Accounts) > 0 {
		h.Jobs = append(h.Jobs, inventory.Job{
			Store:    dynamo.New(dynamodb.NewFromConfig(awsCfg), cfg.Table),
			Client:   inventory.ClientFor(awsCfg, cfg.SecurityAccount, awsid.Partition(awsCfg.Region)),
			Accounts: cfg.Accounts, Regions: cfg.Regions, TTL: 2 * time.Hour,
		})
	}
	if cfg.Silence > 0 {
		h.Jobs = append(h.Jobs, silence.Job{
			Store: dynamo.New(dynamodb.NewFromConfig(awsCfg), cfg.Table), Silence: cfg.Silence,
			Metric: func(name string, v int, at time.Time) { refresh.WriteMetric(os.Stdout, name, v, at) },
		})
	}
	if len(cfg.ASNSources) > 0 {
		conv := &refresh.ASNConverter{Sources: cfg.ASNSources, S3: s3c, Bucket: cfg.ASNDB.Bucket, Key: cfg.ASNDB.Key}
		h.Jobs = append(h.Jobs, refresh.ASNJob{ASNConverter: conv, Every: 24 * time.Hour})
	}
	lambda.Start(h.Handle)
}
