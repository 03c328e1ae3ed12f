// Package hub imports findings into Security Hub.
package hub

import (
	"context"
	"errors"
	"fmt"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/securityhub"
	"github.com/aws/aws-sdk-go-v2/service/securityhub/types"
)

// API is the part of the Security Hub client the importer calls.
type API interface {
	BatchImportFindings(context.Context, *securityhub.BatchImportFindingsInput, ...func(*securityhub.Options)) (*securityhub.BatchImportFindingsOutput, error)
}

// BatchImportFindings takes at most 100 findings a call.
// https://docs.aws.amazon.com/securityhub/1.0/APIReference/API_BatchImportFindings.html
const batchLimit = 100

// Importer imports findings. Updates re-import the same Id with a later UpdatedAt.
type Importer struct{ api API }

// New returns an importer over api (the SDK client retries throttling itself).
func New(api API) *Importer { return &Importer{api: api} }

// ImportError lists the findings Security Hub did not take, by Id.
type ImportError struct {
	Failed map[string]string // Id -> error code and message
	Err    error             // a failed call: every finding of that call is in Failed
}

func (e *ImportError) Error() string {
	if e.Err != nil {
		return fmt.Sprintf("securityhub: %d findings not imported: %v", len(e.Failed), e.Err)
	}
	for id, why := range e.Failed {
		return fmt.Sprintf("securityhub: %d findings not imported, e.g. %s: %s", len(e.Failed), id, why)
	}
	return "securityhub: import failed"
}

func (e *ImportError) Unwrap() error { return e.Err }

// Import sends the findings in batches of 100. Findings that failed are named in the
// returned *ImportError: the caller fails the messages they came from.
func (im *Importer) Import(ctx context.Context, fs []types.AwsSecurityFinding) error {
	ie := &ImportError{Failed: map[string]string{}}
	var errs []error
	for start := 0; start < len(fs); start += batchLimit {
		batch := fs[start:min(start+batchLimit, len(fs))]
		out, err := im.api.BatchImportFindings(ctx, &securityhub.BatchImportFindingsInput{Findings: batch})
		if err != nil {
			for _, f := range batch {
				ie.Failed[aws.ToString(f.Id)] = err.Error()
			}
			errs = append(errs, err)
			continue
		}
		for _, ff := range out.FailedFindings {
			ie.Failed[aws.ToString(ff.Id)] = aws.ToString(ff.ErrorCode) + ": " + aws.ToString(ff.ErrorMessage)
		}
	}
	if len(ie.Failed) == 0 {
		return nil
	}
	ie.Err = errors.Join(errs...)
	return ie
}
