package detect

import (
	"context"
	"testing"
	"time"

	"github.com/outsider-sec/outsider/pkg/cloudtrail"
)

// TestShardHandOver: the role owner's shard takes from the caller's what a cross-account
// AssumeRole issued, and goes on when the caller's shard abandoned it (its input failed
// before it), instead of waiting for ever.
func TestShardHandOver(t *testing.T) {
	st := newCountingStore()
	owns := func(mine string) func(string) bool { return func(a string) bool { return a == mine } }
	const kx = "ASIACROSSACCOUNTKEY1"
	target := "arn:aws:iam::" + otherAcct + ":role/deploy-target"
	use := rec(day(20, 400), cloudtrail.Identity{
		Type: "AssumedRole", ARN: "arn:aws:sts::" + otherAcct + ":assumed-role/deploy-target/chain", AccountID: otherAcct, AccessKeyID: kx,
		IssuerARN: target, IssuerAccount: otherAcct, IssuerName: "deploy-target",
	}, "ListBuckets", cgIP, "python-requests")
	use.RecipientAccount = otherAcct

	t.Run("handed over", func(t *testing.T) {
		x := NewExchange()
		caller, owner := newDetector(t, st, nil), newDetector(t, st, nil)
		caller.SetShard(owns(acct), x)
		owner.SetShard(owns(otherAcct), x)
		run(t, caller, history(21, evFn, evRole)...)
		r := assumeRole(day(20, 200), roleSession(evRole, evFn, evKey), target, kx, awsIP, acct)
		done := make(chan error, 1)
		go func() { _, err := owner.Process(context.Background(), r); done <- err }()
		run(t, caller, r)
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		f, ok := findingOf(run(t, owner, use), TitleRemote)
		if !ok || f.Function != evFn || f.Account != acct || f.ChainedRoleARN != target {
			t.Errorf("found %v: %+v; want the chained key's use on %s", ok, f, evFn)
		}
	})
	t.Run("before the caller's shard wrote anything", func(t *testing.T) {
		// Shards write at the same batches, a replay's every 64,000 records: until then the
		// caller's account's activation is only in its shard's memory, and a chained key's
		// use on the owner's side raises a finding on the caller's account all the same.
		x, fresh := NewExchange(), newCountingStore()
		caller, owner := newDetector(t, fresh, nil), newDetector(t, fresh, nil)
		caller.SetShard(owns(acct), x)
		owner.SetShard(owns(otherAcct), x)
		for _, r := range history(21, evFn, evRole) {
			if _, err := caller.Process(context.Background(), r); err != nil {
				t.Fatal(err)
			}
		}
		r := assumeRole(day(20, 200), roleSession(evRole, evFn, evKey), target, kx, awsIP, acct)
		done := make(chan error, 1)
		go func() { _, err := owner.Process(context.Background(), r); done <- err }()
		if _, err := caller.Process(context.Background(), r); err != nil {
			t.Fatal(err)
		}
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		if _, ok, _ := fresh.Memory.Get(context.Background(), keyAccount+acct, time.Time{}); ok {
			t.Fatal("the caller's shard wrote its account: the test would not test the hand-over")
		}
		f, ok := findingOf(run(t, owner, use), TitleRemote)
		if !ok || f.Function != evFn || f.Account != acct {
			t.Errorf("found %v: %+v; want the chained key's use on %s", ok, f, evFn)
		}
	})
	t.Run("abandoned", func(t *testing.T) {
		x := NewExchange()
		caller, owner := newDetector(t, st, nil), newDetector(t, st, nil)
		caller.SetShard(owns(acct), x)
		owner.SetShard(owns(otherAcct), x)
		r := assumeRole(day(20, 200), roleSession(evRole, evFn, evKey), target, "ASIACROSSACCOUNTKEY2", awsIP, acct)
		caller.Abandon([]*cloudtrail.Record{r})
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if _, err := owner.Process(ctx, r); err != nil {
			t.Fatalf("the owner's shard did not go on: %v", err)
		}
	})
}
