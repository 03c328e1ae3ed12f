package asff

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/securityhub"
	"github.com/aws/aws-sdk-go-v2/service/securityhub/types"
	"github.com/google/go-cmp/cmp"

	"github.com/outsider-sec/outsider/pkg/detect"
)

var update = flag.Bool("update", false, "rewrite the golden files")

var t0 = time.Date(2026, 3, 22, 8, 20, 0, 0, time.UTC)

var product = Product{Partition: "aws", Region: "eu-west-1", Account: "111122223333"}

// findings are one case a title, as the detector makes them.
func findings() map[string]detect.Finding {
	base := detect.Finding{
		Account: "210987654321", Partition: "aws", Region: "eu-west-1", SubjectKind: detect.SubjectFunction, Subject: "invoice-pdf",
		Function: "invoice-pdf", FunctionARN: "arn:aws:lambda:eu-west-1:210987654321:function:invoice-pdf",
		Role: "invoice-pdf-exec", RoleARN: "arn:aws:iam::210987654321:role/invoice-pdf-exec", Session: "invoice-pdf",
		PeriodStart: t0, FirstSeen: t0, LastSeen: t0.Add(50 * time.Hour), Count: 3, AccessKeys: []string{"ASIAEXAMPLEKEY000001"},
		Sources: []detect.Source{{IP: "27.192.8.8", ASN: 4837, Org: "CNCGROUP China169 Backbone", Count: 2}, {IP: "2003:db8:aa::5", Count: 1}},
		Calls: []detect.Call{{Service: "sts.amazonaws.com", Name: "GetCallerIdentity", Region: "eu-west-1", Count: 2, LastSeen: t0.Add(50 * time.Hour)},
			{Service: "s3.amazonaws.com", Name: "ListBuckets", Region: "us-east-1", Count: 1, Errors: 1, LastErr: "AccessDenied", LastSeen: t0}},
		UserAgents: []string{"aws-cli/2.22.0 md/command#s3.ls"}, Failed: 1,
		Attached: detect.AttachedYes, AttachedDetail: "the Lambda inventory lists arn:aws:lambda:eu-west-1:210987654321:function:invoice-pdf with this role",
		AssumedBy: []detect.Assumption{{By: "arn:aws:iam::210987654321:user/mallory", At: t0.Add(-2 * time.Hour), SourceIP: "27.192.8.8", Key: "ASIAEXAMPLEKEY000009"}},
	}
	out := map[string]detect.Finding{}
	for _, title := range detect.Titles {
		f := base
		f.Title, f.Severity = title, detect.Default().Severity[title]
		f.Signals = []string{detect.SignalOutside}
		switch title {
		case detect.TitleRole:
			f.SubjectKind, f.Subject, f.Function, f.FunctionARN, f.Session = detect.SubjectRole, f.Role, "", "", "tmp-debug-session"
			f.IssuedBy = "arn:aws:iam::210987654321:user/mallory"
			f.Attached, f.AttachedDetail = detect.AttachedUnknown, ""
			f.Signals = append(f.Signals, detect.SignalNotIssued)
		case detect.TitleCLI:
			f.Signals = append(f.Signals, detect.SignalCLI)
		case detect.TitleKnownASN:
			f.Signals = append(f.Signals, detect.SignalKnownASN)
			f.Attached, f.AttachedDetail, f.AssumedBy = detect.AttachedNo, "the function now uses role invoice-pdf-v2", nil
		case detect.TitleInside:
			f.Signals = append(f.Signals, detect.SignalKeyInside)
			f.InsideSeen = &detect.Sighting{At: t0.Add(-time.Hour), IP: "52.16.10.20"}
		}
		f.ID = "outsider/210987654321/" + f.SubjectKind + "/" + f.Subject + "/" + title.Code() + "/20260322T082000Z"
		out[title.Code()] = f
	}
	return out
}

// TestGolden: the ASFF JSON of each title, as a person reads it in Security Hub.
func TestGolden(t *testing.T) {
	for code, f := range findings() {
		t.Run(code, func(t *testing.T) {
			got, err := JSON(Build(f, product))
			if err != nil {
				t.Fatal(err)
			}
			var pretty bytes.Buffer
			json.Indent(&pretty, got, "", "  ")
			pretty.WriteByte('\n')
			path := filepath.Join("testdata", code+".json")
			if *update {
				os.WriteFile(path, pretty.Bytes(), 0o644)
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run with -update)", err)
			}
			if diff := cmp.Diff(string(want), pretty.String()); diff != "" {
				t.Errorf("ASFF (-want +got):\n%s", diff)
			}
		})
	}
}

func TestFields(t *testing.T) {
	fs := findings()
	f := Build(fs["cli"], product)
	if *f.AwsAccountId != "111122223333" || *f.ProductArn != "arn:aws:securityhub:eu-west-1:111122223333:product/111122223333/default" {
		t.Errorf("account %s, product %s", *f.AwsAccountId, *f.ProductArn)
	}
	if *f.Title != string(detect.TitleCLI) || f.Severity.Label != types.SeverityLabelHigh || f.FindingProviderFields.Severity.Label != types.SeverityLabelHigh {
		t.Errorf("title %s severity %s", *f.Title, f.Severity.Label)
	}
	var kinds []string
	for _, r := range f.Resources {
		kinds = append(kinds, *r.Type+"="+*r.Id)
	}
	want := []string{
		"AwsLambdaFunction=arn:aws:lambda:eu-west-1:210987654321:function:invoice-pdf",
		"AwsIamRole=arn:aws:iam::210987654321:role/invoice-pdf-exec",
		"AwsIamAccessKey=AWS::IAM::AccessKey:ASIAEXAMPLEKEY000001",
	}
	if diff := cmp.Diff(want, kinds); diff != "" {
		t.Errorf("resources (-want +got):\n%s", diff)
	}
	rip := f.Action.AwsApiCallAction.RemoteIpDetails
	if *rip.IpAddressV4 != "27.192.8.8" || *rip.Organization.Asn != 4837 {
		t.Errorf("remote ip %+v", rip)
	}
	text := *f.Remediation.Recommendation.Text
	for _, s := range []string{"Role attached: yes", "Assumed by another identity: yes: arn:aws:iam::210987654321:user/mallory", "Calls by the key from outside: 3 (1 failed)",
		"aws cloudtrail lookup-events --region eu-west-1 --lookup-attributes AttributeKey=AccessKeyId,AttributeValue=ASIAEXAMPLEKEY000001",
		"In account 210987654321", "Contain: revoke", "the function's"} {
		if !strings.Contains(text, s) {
			t.Errorf("recommendation lacks %q: %s", s, text)
		}
	}
	if len(text) > maxRemediation || len(*f.Description) > maxDescription {
		t.Errorf("text over Security Hub's limits: %d, %d", len(text), len(*f.Description))
	}
	for k, v := range f.ProductFields {
		if len(k) > 128 || len(v) > maxFieldValue {
			t.Errorf("product field %s too long", k)
		}
	}
	if len(f.ProductFields) > 50 {
		t.Errorf("%d product fields, Security Hub takes 50", len(f.ProductFields))
	}
}

// TestUpdatedAt: a finding's UpdatedAt is its version's date (to the millisecond, later
// for every version), LastObservedAt its last call's.
func TestUpdatedAt(t *testing.T) {
	f := findings()["cli"]
	if got := *Build(f, product).UpdatedAt; got != *Build(f, product).LastObservedAt {
		t.Errorf("never revised: UpdatedAt %s, want LastObservedAt", got)
	}
	f.Revised = f.LastSeen.Add(2 * time.Millisecond)
	out := Build(f, product)
	if want := f.LastSeen.UTC().Format("2006-01-02T15:04:05") + ".002Z"; *out.UpdatedAt != want || *out.LastObservedAt != ts(f.LastSeen) {
		t.Errorf("UpdatedAt %s, LastObservedAt %s; want %s, %s", *out.UpdatedAt, *out.LastObservedAt, want, ts(f.LastSeen))
	}
	if err := Check(out); err != nil {
		t.Error(err)
	}
}

// TestSDKAcceptsAndJSONMatches: the SDK's own validation passes for every title, and
// what it sends to Security Hub is what JSON prints.
func TestSDKAcceptsAndJSONMatches(t *testing.T) {
	var bodies [][]byte
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		bodies = append(bodies, b)
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"FailedCount":0,"SuccessCount":1,"FailedFindings":[]}`)
	}))
	defer srv.Close()
	client := securityhub.New(securityhub.Options{
		Region: "eu-west-1", BaseEndpoint: aws.String(srv.URL),
		Credentials: aws.AnonymousCredentials{},
	})
	for code, f := range findings() {
		asff := Build(f, product)
		if _, err := client.BatchImportFindings(context.Background(), &securityhub.BatchImportFindingsInput{Findings: []types.AwsSecurityFinding{asff}}); err != nil {
			t.Fatalf("%s: SDK rejects the finding: %v", code, err)
		}
		var sent struct{ Findings []any }
		if err := json.Unmarshal(bodies[len(bodies)-1], &sent); err != nil {
			t.Fatal(err)
		}
		ours, _ := JSON(asff)
		var mine any
		json.Unmarshal(ours, &mine)
		if diff := cmp.Diff(sent.Findings[0], mine); diff != "" {
			t.Errorf("%s: JSON differs from what the SDK sends (-sdk +ours):\n%s", code, diff)
		}
	}
	// And a finding missing a required field is refused before it is sent.
	bad := Build(findings()["cli"], product)
	bad.Title = nil
	n := len(bodies)
	if _, err := client.BatchImportFindings(context.Background(), &securityhub.BatchImportFindingsInput{Findings: []types.AwsSecurityFinding{bad}}); err == nil || len(bodies) != n {
		t.Errorf("invalid finding accepted: %v", err)
	}
}

// TestShowsWhatIsKnown: a chained token's finding names the chained role (a resource and a
// product field), an IPv6 source is in Network.SourceIpV6, a full finding says its count
// is a lower bound, and an update leaves Severity and Types to FindingProviderFields.
func TestShowsWhatIsKnown(t *testing.T) {
	f := findings()["remote"]
	f.ChainedRoleARN = "arn:aws:iam::999988887777:role/deploy-target"
	f.Sources = []detect.Source{{IP: "2003:db8:aa::5", Count: 1}}
	f.Saturated = true
	created := ForChange(detect.Change{Finding: f, New: true}, product)
	var chained bool
	for _, r := range created.Resources {
		chained = chained || *r.Type == "AwsIamRole" && *r.Id == f.ChainedRoleARN && *r.Details.AwsIamRole.RoleName == "deploy-target"
	}
	if !chained || created.ProductFields["outsider/ChainedRoleArn"] != f.ChainedRoleARN {
		t.Errorf("the chained role is not a resource and a product field: %+v", created.ProductFields)
	}
	if created.Network == nil || aws.ToString(created.Network.SourceIpV6) != "2003:db8:aa::5" {
		t.Errorf("Network %+v, want SourceIpV6 2003:db8:aa::5", created.Network)
	}
	if created.ProductFields["outsider/CountIsLowerBound"] != "true" || !strings.Contains(*created.Description, "at least 3 call(s)") {
		t.Errorf("a full finding does not say its count is a lower bound: %s", *created.Description)
	}
	if created.Severity == nil || len(created.Types) == 0 {
		t.Error("a new finding has no top-level Severity or Types")
	}
	updated := ForChange(detect.Change{Finding: f}, product)
	if updated.Severity != nil || updated.Types != nil {
		t.Errorf("an update sets the top-level Severity %v or Types %v: they are the analysts'", updated.Severity, updated.Types)
	}
	if updated.FindingProviderFields == nil || updated.FindingProviderFields.Severity == nil || len(updated.FindingProviderFields.Types) == 0 {
		t.Error("an update lacks FindingProviderFields' Severity and Types")
	}
}

// TestRecommendationOverflow: a theft of 16 keys and 48 calls does not fit Security Hub's
// 512 characters; the text is shortened, keeps every step, and says where the rest is —
// never "…: ." with the list dropped.
func TestRecommendationOverflow(t *testing.T) {
	f := findings()["token"]
	for i := range 16 {
		f.AccessKeys = append(f.AccessKeys, fmt.Sprintf("ASIAEXAMPLEKEY%06d", 100+i))
	}
	for i := range 48 {
		f.Calls = append(f.Calls, detect.Call{Service: "iam.amazonaws.com", Name: fmt.Sprintf("ListSomethingQuiteLong%02d", i), Region: "eu-west-1", Count: 1})
	}
	f.Count, f.Failed = 48, 16
	f.AssumedBy = append(f.AssumedBy, detect.Assumption{By: "arn:aws:iam::210987654321:user/" + strings.Repeat("x", 60), At: f.FirstSeen, SourceIP: "27.192.8.8"})
	text := Recommendation(f)
	if len(text) > maxRemediation {
		t.Fatalf("%d characters", len(text))
	}
	for _, s := range []string{"1. Role attached", "2. Assumed by another identity: yes", "3. Calls by the key from outside: 48 (16 failed)", "4. Contain: revoke", "outsider/AccessKeys", "210987654321"} {
		if !strings.Contains(text, s) {
			t.Errorf("shortened recommendation lacks %q: %s", s, text)
		}
	}
	if strings.Contains(text, ": .") {
		t.Errorf("a list dropped: %s", text)
	}
}

// TestCheck: every finding of every title, new and updated, and the overflowing one, is
// what Security Hub takes; and the check refuses what Security Hub refuses.
func TestCheck(t *testing.T) {
	for code, f := range findings() {
		for _, c := range []detect.Change{{Finding: f, New: true}, {Finding: f}} {
			if err := Check(ForChange(c, product)); err != nil {
				t.Errorf("%s (new %v): %v", code, c.New, err)
			}
		}
	}
	good := Build(findings()["token"], product)
	for name, spoil := range map[string]func(*types.AwsSecurityFinding){
		"long title":  func(f *types.AwsSecurityFinding) { f.Title = aws.String(strings.Repeat("x", 257)) },
		"no resource": func(f *types.AwsSecurityFinding) { f.Resources = nil },
		"bad type":    func(f *types.AwsSecurityFinding) { f.Types = []string{"Credential Access"} },
		"51 product fields": func(f *types.AwsSecurityFinding) {
			f.ProductFields = map[string]string{}
			for i := range 51 {
				f.ProductFields[fmt.Sprint(i)] = "v"
			}
		},
		"another's product": func(f *types.AwsSecurityFinding) { f.AwsAccountId = aws.String("444455556666") },
		"bad time":          func(f *types.AwsSecurityFinding) { f.UpdatedAt = aws.String("yesterday") },
		"no severity":       func(f *types.AwsSecurityFinding) { f.Severity, f.FindingProviderFields = nil, nil },
		"analyst's field": func(f *types.AwsSecurityFinding) {
			f.Workflow = &types.Workflow{Status: types.WorkflowStatusSuppressed}
		},
	} {
		f := good
		f.ProductFields = maps.Clone(good.ProductFields)
		spoil(&f)
		if err := Check(f); err == nil {
			t.Errorf("%s: passed the check", name)
		}
	}
}
