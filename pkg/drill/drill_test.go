package drill

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/aws/aws-sdk-go-v2/service/securityhub"
	shtypes "github.com/aws/aws-sdk-go-v2/service/securityhub/types"
	"github.com/aws/aws-sdk-go-v2/service/sts"

	"github.com/outsider-sec/outsider/internal/mototest"
	"github.com/outsider-sec/outsider/pkg/asff"
	"github.com/outsider-sec/outsider/pkg/detect"
)

func TestMain(m *testing.M) { os.Exit(mototest.Main(m)) }

// canary stands for the canary function: moto runs Lambda functions only in Docker, so the
// invocation answers what the canary answers — credentials, here ones moto's STS issued
// for the canary's role.
type canary struct{ payload []byte }

func (c canary) Invoke(context.Context, *lambda.InvokeInput, ...func(*lambda.Options)) (*lambda.InvokeOutput, error) {
	return &lambda.InvokeOutput{Payload: c.payload}, nil
}

// TestDrill: the drill calls STS with the canary's token and waits until Security Hub
// holds the drill's finding for that key from after the call — an earlier drill's finding
// of the same key does not count — and says how long it took; with no finding, it says so.
func TestDrill(t *testing.T) {
	ctx := context.Background()
	cfg := mototest.Config(t, nil)
	role, err := sts.NewFromConfig(cfg).AssumeRole(ctx, &sts.AssumeRoleInput{RoleArn: aws.String("arn:aws:iam::123456789012:role/outsider-canary"), RoleSessionName: aws.String("outsider-canary")})
	if err != nil {
		t.Fatal(err)
	}
	key := *role.Credentials.AccessKeyId
	payload, _ := json.Marshal(map[string]string{"AccessKeyId": key, "SecretAccessKey": *role.Credentials.SecretAccessKey, "SessionToken": *role.Credentials.SessionToken})
	hub := securityhub.NewFromConfig(cfg)
	importDrill := func(last time.Time) {
		f := detect.Finding{
			ID: "outsider/drill/" + last.Format(time.RFC3339Nano), Title: detect.TitleRemote, Severity: "INFORMATIONAL", Drill: true,
			Account: "123456789012", Partition: "aws", Region: "us-east-1", SubjectKind: detect.SubjectFunction, Subject: "us-east-1:outsider-canary",
			Function: "outsider-canary", FunctionARN: "arn:aws:lambda:us-east-1:123456789012:function:outsider-canary",
			Role: "outsider-canary", RoleARN: "arn:aws:iam::123456789012:role/outsider-canary", PeriodStart: last.Add(-time.Hour),
			FirstSeen: last, LastSeen: last, Count: 1, AccessKeys: []string{key}, Sources: []detect.Source{{IP: "27.192.8.8", Count: 1}},
		}
		if _, err := hub.BatchImportFindings(ctx, &securityhub.BatchImportFindingsInput{Findings: []shtypes.AwsSecurityFinding{asff.Build(f, asff.Product{Partition: "aws", Region: "us-east-1", Account: "123456789012"})}}); err != nil {
			t.Error(err)
		}
	}
	importDrill(time.Now().Add(-2 * time.Hour)) // yesterday's drill, same warm canary
	newDrill := func(out *bytes.Buffer, timeout time.Duration) *Drill {
		return &Drill{
			Lambda: canary{payload}, Hub: hub, Function: "outsider-canary", Every: 50 * time.Millisecond, Timeout: timeout, Out: out,
			STS: func(c aws.Credentials) Caller {
				cc := cfg.Copy()
				cc.Credentials = credentials.StaticCredentialsProvider{Value: c}
				return sts.NewFromConfig(cc)
			},
		}
	}

	var out bytes.Buffer
	if _, err := newDrill(&out, 300*time.Millisecond).Run(ctx); !errors.Is(err, ErrNoFinding) {
		t.Fatalf("no new finding: %v\n%s", err, out.String())
	}
	go func() {
		time.Sleep(300 * time.Millisecond) // the detector's part: CloudTrail, EventBridge, SQS, the Lambda
		importDrill(time.Now())
	}()
	out.Reset()
	took, err := newDrill(&out, 10*time.Second).Run(ctx)
	if err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	if took < 250*time.Millisecond || !strings.Contains(out.String(), "used the canary's key "+key) || !strings.Contains(out.String(), "finding outsider/drill/") {
		t.Errorf("took %s:\n%s", took, out.String())
	}

	if _, err := (&Drill{Lambda: canary{[]byte(`{"errorMessage":"boom"}`)}, Function: "x", Out: &out}).Run(ctx); err == nil || !strings.Contains(err.Error(), "no credentials") {
		t.Errorf("a canary that answers no credentials: %v", err)
	}
}
