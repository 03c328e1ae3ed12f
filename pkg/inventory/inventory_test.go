package inventory

import (
	"archive/zip"
	"bytes"
	"context"
	"os"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/iam"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	lambdatypes "github.com/aws/aws-sdk-go-v2/service/lambda/types"

	"github.com/outsider-sec/outsider/internal/mototest"
	"github.com/outsider-sec/outsider/pkg/detect"
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
