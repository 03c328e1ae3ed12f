package inventory

import (
	"archive/zip"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/iam"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	lambdatypes "github.com/aws/aws-sdk-go-v2/service/lambda/types"

	"github.com/outsider-sec/outsider/internal/mototest"
	"github.com/outsider-sec/outsider/pkg/detect"
	"github.com/outsider-sec/outsider/pkg/dynamo"
	"github.com/outsider-sec/outsider/pkg/store"
)

func TestMain(m *testing.M) { os.Exit(mototest.Main(m)) }

// moto's default account: the "security account" here.
const self = "123456789012"

func zipped(t *testing.T) []byte {
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	w, _ := zw.Create("bootstrap")
	w.Write([]byte("#!/bin/sh\n"))
	zw.Close()
	return buf.Bytes()
}

// TestCollectAndKeep lists real functions from moto's Lambda API, keeps them
// in the store, and the detector reads them: the role is attached, and the function is known.
func TestCollectAndKeep(t *testing.T) {
	ctx := context.Background()
	cfg := mototest.Config(t, nil)
	role, err := iam.NewFromConfig(cfg).CreateRole(ctx, &iam.CreateRoleInput{
		RoleName:                 aws.String("ledger-sync-role"),
		AssumeRolePolicyDocument: aws.String(`{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"Service":"lambda.amazonaws.com"},"Action":"sts:AssumeRole"}]}`),
	})
	if err != nil {
		t.Fatal(err)
	}
	lc := lambda.NewFromConfig(cfg)
	for _, name := range []string{"ledger-sync", "ledger-report"} {
		if _, err := lc.CreateFunction(ctx, &lambda.CreateFunctionInput{
			FunctionName: aws.String(name), Role: role.Role.Arn, Runtime: lambdatypes.RuntimeProvidedal2023, Handler: aws.String("bootstrap"),
			Code: &lambdatypes.FunctionCode{ZipFile: zipped(t)},
		}); err != nil {
			t.Fatal(err)
		}
	}
	client := ClientFor(cfg, self, "aws")
	fns, err := Collect(ctx, client(self, "us-east-1"))
	if err != nil {
		t.Fatal(err)
	}
	if len(fns) < 2 {
		t.Fatalf("%d functions", len(fns))
	}
	// A member account, through its read-only role (moto's STS issues the credentials).
	if _, err := Collect(ctx, client("111122223333", "us-east-1")); err != nil {
		t.Fatalf("member account: %v", err)
	}

	st := store.NewMemory()
	now := time.Now()
	n, err := Refresh(ctx, st, client, self, []string{"us-east-1"}, now, 2*time.Hour)
	if err != nil || n < 2 {
		t.Fatalf("refresh: %d, %v", n, err)
	}
	if _, ok, _ := st.Get(ctx, Key(self), now.Add(3*time.Hour)); ok {
		t.Error("the inventory outlives its time to live")
	}
	d, err := detect.New(detect.Default(), st, emptyRanges{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	// Any record of the account makes the detector read the account's inventory.
	rec := detectRecord(self)
	if _, err := d.Process(ctx, rec); err != nil {
		t.Fatal(err)
	}
	if !d.InventoryHas(self, "ledger-sync-role", "ledger-sync") {
		t.Error("the detector did not read the kept inventory")
	}
}

// pages is a Lister of generated functions, 50 a page, as ListFunctions pages them.
type pages struct {
	account string
	n       int
}

func (p pages) ListFunctions(_ context.Context, in *lambda.ListFunctionsInput, _ ...func(*lambda.Options)) (*lambda.ListFunctionsOutput, error) {
	start := 0
	if in.Marker != nil {
		start, _ = strconv.Atoi(*in.Marker)
	}
	out := &lambda.ListFunctionsOutput{}
	for i := start; i < min(start+50, p.n); i++ {
		// Names at Lambda's 64-character limit: the largest inventory an account can make.
		name := fmt.Sprintf("fn-%061d", i)
		role := fmt.Sprintf("arn:aws:iam::%s:role/%s", p.account, fmt.Sprintf("role-%059d", i%40))
		out.Functions = append(out.Functions, lambdatypes.FunctionConfiguration{
			FunctionName: aws.String(name), FunctionArn: aws.String("arn:aws:lambda:us-east-1:" + p.account + ":function:" + name), Role: aws.String(role),
		})
	}
	if start+50 < p.n {
		out.NextMarker = aws.String(strconv.Itoa(start + 50))
	}
	return out, nil
}

// TestLargeInventory: an account of 3,000 functions (an inventory of about a megabyte)
// is kept in DynamoDB (moto refuses items over 400 KB, as DynamoDB does) in parts, next to
// small accounts' inventories that it never takes down, and the detector reads it whole.
func TestLargeInventory(t *testing.T) {
	ctx := context.Background()
	cfg := mototest.Config(t, nil)
	st := dynamo.New(dynamodb.NewFromConfig(cfg), mototest.Table(t, cfg))
	sizes := map[string]int{"111111111111": 3, "222222222222": 3000, "333333333333": 40}
	j := Job{
		Store: st, Client: func(account, _ string) Lister { return pages{account, sizes[account]} },
		Accounts: []string{"111111111111", "222222222222", "333333333333"}, Regions: []string{"us-east-1"}, TTL: 2 * time.Hour,
	}
	if err := j.Run(ctx, slog.New(slog.NewTextHandler(io.Discard, nil))); err != nil {
		t.Fatal(err)
	}
	d, err := detect.New(detect.Default(), st, emptyRanges{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	for a, n := range sizes {
		if _, err := d.Process(ctx, detectRecord(a)); err != nil {
			t.Fatal(err)
		}
		for _, i := range []int{0, n / 2, n - 1} {
			fn := fmt.Sprintf("fn-%061d", i)
			role := fmt.Sprintf("role-%059d", i%40)
			if !d.InventoryHas(a, role, fn) {
				t.Errorf("account %s: function %d of %d not read back", a, i, n)
			}
		}
	}
	b, _, err := st.Get(ctx, Key("222222222222"), time.Time{})
	var head detect.StoredInventory
	if err := errors.Join(err, json.Unmarshal(b, &head)); err != nil || head.Parts < 3 || len(b) > 300<<10 {
		t.Errorf("the large account's head: %d bytes, %d parts (%v)", len(b), head.Parts, err)
	}
}
