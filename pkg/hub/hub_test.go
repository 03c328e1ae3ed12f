package hub

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/securityhub"
	"github.com/aws/aws-sdk-go-v2/service/securityhub/types"
)

type fakeHub struct {
	calls  []int
	refuse map[string]bool
	fail   error
}

func (f *fakeHub) BatchImportFindings(_ context.Context, in *securityhub.BatchImportFindingsInput, _ ...func(*securityhub.Options)) (*securityhub.BatchImportFindingsOutput, error) {
	f.calls = append(f.calls, len(in.Findings))
	if f.fail != nil {
		return nil, f.fail
	}
	out := &securityhub.BatchImportFindingsOutput{}
	for _, fd := range in.Findings {
		if f.refuse[*fd.Id] {
			out.FailedFindings = append(out.FailedFindings, types.ImportFindingsError{Id: fd.Id, ErrorCode: aws.String("InvalidInput"), ErrorMessage: aws.String("refused")})
		}
	}
	return out, nil
}

func findings(n int) []types.AwsSecurityFinding {
	out := make([]types.AwsSecurityFinding, n)
	for i := range out {
		out[i].Id = aws.String(fmt.Sprintf("f-%d", i))
	}
	return out
}

func TestImportBatchesAndFailures(t *testing.T) {
	f := &fakeHub{refuse: map[string]bool{"f-7": true, "f-150": true}}
	err := New(f).Import(context.Background(), findings(250))
	if fmt.Sprint(f.calls) != "[100 100 50]" {
		t.Errorf("batches %v, want [100 100 50]", f.calls)
	}
	var ie *ImportError
	if !errors.As(err, &ie) || len(ie.Failed) != 2 || ie.Failed["f-7"] == "" || ie.Failed["f-150"] == "" {
		t.Fatalf("error %v", err)
	}
	// A failed call fails every finding it carried.
	f = &fakeHub{fail: errors.New("throttled")}
	err = New(f).Import(context.Background(), findings(120))
	if !errors.As(err, &ie) || len(ie.Failed) != 120 || !errors.Is(err, f.fail) {
		t.Fatalf("error %v", err)
	}
	if err := New(&fakeHub{}).Import(context.Background(), findings(3)); err != nil {
		t.Errorf("clean import: %v", err)
	}
}
