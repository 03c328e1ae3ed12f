// Package inventory lists each account's Lambda functions and their roles (ListFunctions,
// through the member account's read-only role) and keeps the list in the detector's store,
// where the detector reads it: the fourth source of what a function is (see pkg/detect), and the answer to "is the
// role attached to the function?".
package inventory

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials/stscreds"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/aws/aws-sdk-go-v2/service/sts"

	"github.com/outsider-sec/outsider/pkg/awsid"
	"github.com/outsider-sec/outsider/pkg/config"
	"github.com/outsider-sec/outsider/pkg/detect"
)

// Lister is the part of the Lambda client the inventory calls.
type Lister interface {
	ListFunctions(context.Context, *lambda.ListFunctionsInput, ...func(*lambda.Options)) (*lambda.ListFunctionsOutput, error)
}

// Collect lists every function, all pages.
func Collect(ctx context.Context, l Lister) ([]detect.InventoryFunction, error) {
	var out []detect.InventoryFunction
	p := lambda.NewListFunctionsPaginator(l, &lambda.ListFunctionsInput{})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return nil, fmt.Errorf("inventory: list functions: %w", err)
		}
		for _, f := range page.Functions {
			out = append(out, detect.InventoryFunction{
				FunctionName: aws.ToString(f.FunctionName), FunctionArn: aws.ToString(f.FunctionArn), Role: aws.ToString(f.Role),
			})
		}
	}
	return out, nil
}

// ClientFor returns a Lambda client for an account and region: directly in the detector's
// own account, through the member account's read-only role elsewhere.
func ClientFor(cfg aws.Config, self, partition string) func(account, region string) Lister {
	return func(account, region string) Lister {
		c := cfg.Copy()
		c.Region = region
		if account != self {
			arn := awsid.RoleARN(partition, account, config.InventoryRolePrefix+region)
			c.Credentials = aws.NewCredentialsCache(stscreds.NewAssumeRoleProvider(sts.NewFromConfig(cfg), arn, func(o *stscreds.AssumeRoleOptions) {
				o.RoleSessionName = "outsider-inventory"
			}))
		}
		return lambda.NewFromConfig(c)
	}
}

// Key is where an account's inventory is kept in the store.
func Key(account string) string { return detect.InventoryKey(account) }

// Refresh lists the functions of an account in every region given and keeps the list in
// the store for ttl (the detector treats a missing list as "unknown"). A large list is
// split into items far below DynamoDB's 400 KB limit: the parts first, then the head
// that names them, each account written on its own, so that no account's write takes
// another's down with it.
func Refresh(ctx context.Context, st detect.Store, client func(account, region string) Lister, account string, regions []string, now time.Time, ttl time.Duration) (int, error) {
	var all []detect.InventoryFunction
	for _, region := range regions {
		fns, err := Collect(ctx, client(account, region))
		if err != nil {
			return 0, fmt.Errorf("inventory: %s %s: %w", account, region, err)
		}
		all = append(all, fns...)
	}
	head, parts := detect.SplitInventory(all, now)
	for i, p := range parts {
		if err := put(ctx, st, detect.InventoryPartKey(account, now, i+1), p, now.Add(ttl)); err != nil {
			return 0, fmt.Errorf("inventory: keep %s: %w", account, err)
		}
	}
	if len(parts) > 0 {
		// The parts are durable before the head that names them.
		if err := st.Flush(ctx); err != nil {
			return 0, fmt.Errorf("inventory: keep %s: %w", account, err)
		}
	}
	if err := put(ctx, st, Key(account), head, now.Add(ttl)); err != nil {
		return 0, fmt.Errorf("inventory: keep %s: %w", account, err)
	}
	if err := st.Flush(ctx); err != nil {
		return 0, fmt.Errorf("inventory: keep %s: %w", account, err)
	}
	return len(all), nil
}

func put(ctx context.Context, st detect.Store, key string, v detect.StoredInventory, expires time.Time) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return st.Put(ctx, key, b, expires)
}

// Job keeps the inventory of every account given, on the refresher's schedule.
type Job struct {
	Store    detect.Store
	Client   func(account, region string) Lister
	Accounts []string
	Regions  []string
	TTL      time.Duration
}

// Run implements the refresher's job: each account in turn; one account's failure does
// not stop the others.
func (j Job) Run(ctx context.Context, log *slog.Logger) error {
	var errs []error
	for _, a := range j.Accounts {
		n, err := Refresh(ctx, j.Store, j.Client, a, j.Regions, time.Now(), j.TTL)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		log.InfoContext(ctx, "inventory kept", "account", a, "functions", n)
	}
	if err := errors.Join(errs...); err != nil {
		log.ErrorContext(ctx, "inventory not refreshed", "error", err)
		return err
	}
	return nil
}
