package asff

import (
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/securityhub/types"

	"github.com/outsider-sec/outsider/pkg/awsid"
)

// Check validates a finding against Security Hub's rules for BatchImportFindings: the
// required attributes, the lengths and counts, and the formats (timestamps, Types,
// account ids, severity labels). Every error is said, at once. It is how the tests hold
// every finding the detector prints or imports to what Security Hub would take.
// https://docs.aws.amazon.com/securityhub/latest/userguide/asff-required-attributes.html
// https://docs.aws.amazon.com/securityhub/1.0/APIReference/API_AwsSecurityFinding.html
// https://docs.aws.amazon.com/securityhub/latest/userguide/asff-type-taxonomy.html
func Check(f types.AwsSecurityFinding) error {
	var errs []error
	bad := func(format string, a ...any) { errs = append(errs, fmt.Errorf(format, a...)) }
	str := func(name string, v *string, limit int) {
		switch {
		case v == nil || *v == "":
			bad("%s: required", name)
		case limit > 0 && len(*v) > limit:
			bad("%s: %d characters, at most %d", name, len(*v), limit)
		}
	}
	str("SchemaVersion", f.SchemaVersion, 0)
	if f.SchemaVersion != nil && *f.SchemaVersion != SchemaVersion {
		bad("SchemaVersion: %q, want %q", *f.SchemaVersion, SchemaVersion)
	}
	str("Id", f.Id, 512)
	str("ProductArn", f.ProductArn, 2048)
	str("GeneratorId", f.GeneratorId, 512)
	str("AwsAccountId", f.AwsAccountId, 0)
	if f.AwsAccountId != nil && !awsid.IsAccountID(*f.AwsAccountId) {
		bad("AwsAccountId: %q is not a 12-digit account id", *f.AwsAccountId)
	}
	if f.ProductArn != nil && f.AwsAccountId != nil && !strings.Contains(*f.ProductArn, ":"+*f.AwsAccountId+":product/"+*f.AwsAccountId+"/default") {
		bad("ProductArn: %s is not the default product of account %s", *f.ProductArn, *f.AwsAccountId)
	}
	str("Title", f.Title, 256)
	str("Description", f.Description, 1024)
	for name, v := range map[string]*string{"CreatedAt": f.CreatedAt, "UpdatedAt": f.UpdatedAt, "FirstObservedAt": f.FirstObservedAt, "LastObservedAt": f.LastObservedAt} {
		if name == "CreatedAt" || name == "UpdatedAt" {
			str(name, v, 0)
		}
		if v != nil && *v != "" {
			if _, err := time.Parse(time.RFC3339Nano, *v); err != nil {
				bad("%s: %q is not an RFC 3339 timestamp", name, *v)
			}
		}
	}
	sev := f.Severity
	if sev == nil && f.FindingProviderFields != nil && f.FindingProviderFields.Severity != nil {
		sev = &types.Severity{Label: f.FindingProviderFields.Severity.Label}
	}
	if sev == nil || !slices.Contains(types.SeverityLabel("").Values(), sev.Label) {
		bad("Severity: a label of %v is required", types.SeverityLabel("").Values())
	}
	typesOf := f.Types
	if typesOf == nil && f.FindingProviderFields != nil {
		typesOf = f.FindingProviderFields.Types
	}
	if len(typesOf) == 0 || len(typesOf) > 50 {
		bad("Types: %d, want 1 to 50", len(typesOf))
	}
	for _, t := range typesOf {
		if !typeRE.MatchString(t) || len(t) > 128 {
			bad("Types: %q is not namespace/category[/classifier] of Security Hub's taxonomy", t)
		}
	}
	if n := len(f.Resources); n == 0 || n > 32 {
		bad("Resources: %d, want 1 to 32", n)
	}
	for i, r := range f.Resources {
		str(fmt.Sprintf("Resources[%d].Type", i), r.Type, 256)
		str(fmt.Sprintf("Resources[%d].Id", i), r.Id, 512)
	}
	if len(f.ProductFields) > 50 {
		bad("ProductFields: %d pairs, at most 50", len(f.ProductFields))
	}
	for k, v := range f.ProductFields {
		if len(k) > 128 || len(v) > maxFieldValue {
			bad("ProductFields[%.40q]: key %d, value %d characters (at most 128 and 2048)", k, len(k), len(v))
		}
	}
	if r := f.Remediation; r != nil && r.Recommendation != nil && r.Recommendation.Text != nil && len(*r.Recommendation.Text) > maxRemediation {
		bad("Remediation.Recommendation.Text: %d characters, at most 512", len(*r.Recommendation.Text))
	}
	for _, s := range []*string{f.ProductName, f.CompanyName} {
		if s != nil && len(*s) > 128 {
			bad("ProductName/CompanyName: %d characters, at most 128", len(*s))
		}
	}
	// What an analyst sets (BatchUpdateFindings) the detector never sends: an import
	// would not change it anyway, and must not try.
	if f.Workflow != nil || f.Note != nil || f.UserDefinedFields != nil || f.VerificationState != "" {
		bad("Workflow, Note, UserDefinedFields, VerificationState: the analysts' fields, not the detector's")
	}
	return errors.Join(errs...)
}

// typeRE is a finding type: a namespace of Security Hub's taxonomy, a category and an
// optional classifier.
var typeRE = regexp.MustCompile(`^(Software and Configuration Checks|TTPs|Effects|Unusual Behaviors|Sensitive Data Identifications)/[^/]+(/[^/]+)?$`)
