// Command detector is Outsider's detector function, deployed as the Lambda's bootstrap: it
// takes SQS batches (or EventBridge events) of CloudTrail API calls. To run the same
// detection over CloudTrail files on a laptop: go run ./cmd/outsider replay -h.
package main

import (
	"context"
	"fmt"
	"os"

	"github.com/aws/aws-lambda-go/lambda"
	"github.com/aws/aws-lambda-go/lambdacontext"
	awsconfig "github.com/aws/aws-sdk-go-v2/config"

	"github.com/outsider-sec/outsider/pkg/config"
	"github.com/outsider-sec/outsider/pkg/pipeline"
)

func main() {
	if len(os.Args) > 1 || os.Getenv("AWS_LAMBDA_RUNTIME_API") == "" {
		fmt.Fprintln(os.Stderr, "detector: this is the Lambda function's bootstrap, started by AWS Lambda.\n"+
			"To replay CloudTrail files locally: go run ./cmd/outsider replay -h")
		os.Exit(2)
	}
	// JSON when the function's log format is JSON (the stack sets it), with the request id.
	log := lambdacontext.NewLogger()
	ctx := context.Background()
	cfg, err := config.Load(os.Getenv)
	if err != nil {
		// A bad setting stops the cold start, with the message naming it.
		log.Error("cold start failed", "error", err)
		os.Exit(1)
	}
	awsCfg, err := awsconfig.LoadDefaultConfig(ctx)
	if err != nil {
		log.Error("cold start failed", "error", fmt.Errorf("aws config: %w", err))
		os.Exit(1)
	}
	h, err := pipeline.New(ctx, cfg, awsCfg, log)
	if err != nil {
		log.Error("cold start failed", "error", err)
		os.Exit(1)
	}
	lambda.Start(h.Invoke)
}
