// Package drill proves a deployment works, the day it is deployed (DESIGN §10): it invokes
// the stack's canary function, uses the real Lambda token it hands back from outside AWS
// (sts:GetCallerIdentity, which the canary's deny-all role cannot refuse), and waits for
// the finding in Security Hub.
package drill

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/aws/aws-sdk-go-v2/service/securityhub"
	"github.com/aws/aws-sdk-go-v2/service/securityhub/types"
	"github.com/aws/aws-sdk-go-v2/service/sts"
)

// Invoker is the part of the Lambda client the drill calls.
type Invoker interface {
	Invoke(context.Context, *lambda.InvokeInput, ...func(*lambda.Options)) (*lambda.InvokeOutput, error)
}

// Caller is the part of the STS client the drill calls with the canary's token.
type Caller interface {
	GetCallerIdentity(context.Context, *sts.GetCallerIdentityInput, ...func(*sts.Options)) (*sts.GetCallerIdentityOutput, error)
}

// Finder is the part of the Security Hub client the drill calls.
type Finder interface {
	GetFindings(context.Context, *securityhub.GetFindingsInput, ...func(*securityhub.Options)) (*securityhub.GetFindingsOutput, error)
}

// Drill is one run.
type Drill struct {
	Lambda   Invoker
	STS      func(aws.Credentials) Caller // a client that signs with the canary's token
	Hub      Finder                       // Security Hub of the security account (the canary's)
	Function string                       // the canary (the stack's CanaryFunction output)
	Every    time.Duration                // how often Security Hub is asked (default 15 s)
	Timeout  time.Duration                // how long to wait for the finding (default 20 min)
	Out      io.Writer
	Now      func() time.Time
}

// ErrNoFinding: the call was made and no finding came in time.
var ErrNoFinding = errors.New("drill: no finding in time")

// Run makes the call and waits for its finding; it returns the time from the call to the
// finding.
func (d *Drill) Run(ctx context.Context) (time.Duration, error) {
	now := time.Now
	if d.Now != nil {
		now = d.Now
	}
	every, timeout := d.Every, d.Timeout
	if every <= 0 {
		every = 15 * time.Second
	}
	if timeout <= 0 {
		timeout = 20 * time.Minute
	}
	out, err := d.Lambda.Invoke(ctx, &lambda.InvokeInput{FunctionName: aws.String(d.Function)})
	if err != nil {
		return 0, fmt.Errorf("drill: invoke the canary %s: %w", d.Function, err)
	}
	if out.FunctionError != nil {
		return 0, fmt.Errorf("drill: the canary %s failed: %s: %.200s", d.Function, *out.FunctionError, out.Payload)
	}
	var c struct{ AccessKeyId, SecretAccessKey, SessionToken string }
	if err := json.Unmarshal(out.Payload, &c); err != nil || c.AccessKeyId == "" || c.SecretAccessKey == "" {
		return 0, fmt.Errorf("drill: the canary %s answered no credentials (is it the stack's canary?)", d.Function)
	}
	called := now()
	id, err := d.STS(aws.Credentials{AccessKeyID: c.AccessKeyId, SecretAccessKey: c.SecretAccessKey, SessionToken: c.SessionToken, Source: "outsider drill"}).
		GetCallerIdentity(ctx, &sts.GetCallerIdentityInput{})
	if err != nil {
		return 0, fmt.Errorf("drill: sts:GetCallerIdentity with the canary's token: %w", err)
	}
	fmt.Fprintf(d.Out, "outsider drill: used the canary's key %s from this machine as %s at %s; waiting for the finding (up to %s)\n",
		c.AccessKeyId, aws.ToString(id.Arn), called.UTC().Format(time.RFC3339), timeout)
	deadline := called.Add(timeout)
	for {
		f, err := d.find(ctx, c.AccessKeyId, called)
		if err != nil {
			return 0, err
		}
		if f != nil {
			took := now().Sub(called)
			fmt.Fprintf(d.Out, "outsider drill: finding %s after %s: %s\n", aws.ToString(f.Id), took.Round(time.Second), aws.ToString(f.Title))
			return took, nil
		}
		if now().After(deadline) {
			return 0, fmt.Errorf("%w: nothing for key %s %s after the call (CloudTrail delivers to EventBridge within minutes; see the detector's logs and the Outsider dashboard)", ErrNoFinding, c.AccessKeyId, timeout)
		}
		select {
		case <-ctx.Done():
			return 0, ctx.Err()
		case <-time.After(every):
		}
	}
}

// find returns the drill's finding for the key that counts a call at or after the call
// (a warm canary hands the same key again: an earlier drill's finding is not this one's).
func (d *Drill) find(ctx context.Context, key string, called time.Time) (*types.AwsSecurityFinding, error) {
	out, err := d.Hub.GetFindings(ctx, &securityhub.GetFindingsInput{Filters: &types.AwsSecurityFindingFilters{
		ProductFields: []types.MapFilter{
			{Key: aws.String("outsider/Drill"), Value: aws.String("true"), Comparison: types.MapFilterComparisonEquals},
			{Key: aws.String("outsider/AccessKeys"), Value: aws.String(key), Comparison: types.MapFilterComparisonContains},
		},
	}})
	if err != nil {
		return nil, fmt.Errorf("drill: ask Security Hub: %w", err)
	}
	for i, f := range out.Findings {
		// Asked of Security Hub and checked again here, as the filter says.
		if f.ProductFields["outsider/Drill"] != "true" || !slices.Contains(strings.Split(f.ProductFields["outsider/AccessKeys"], ","), key) {
			continue
		}
		// The call's own second: CloudTrail's eventTime is whole seconds.
		if last, err := time.Parse(time.RFC3339, aws.ToString(f.LastObservedAt)); err == nil && !last.Before(called.Truncate(time.Second).Add(-time.Minute)) {
			return &out.Findings[i], nil
		}
	}
	return nil, nil
}
