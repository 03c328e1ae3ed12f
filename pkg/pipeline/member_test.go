package pipeline_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials/stscreds"
	"github.com/aws/aws-sdk-go-v2/service/securityhub"
	shtypes "github.com/aws/aws-sdk-go-v2/service/securityhub/types"
	"github.com/aws/aws-sdk-go-v2/service/sts"

	"github.com/outsider-sec/outsider/internal/mototest"
	"github.com/outsider-sec/outsider/pkg/asff"
	"github.com/outsider-sec/outsider/pkg/pipeline"
)

// refusingSTS answers AssumeRole of one account's roles with STS's AccessDenied, as AWS
// does when the role was removed (moto lets any role be assumed).
type refusingSTS struct {
	account string
	next    http.RoundTripper
}

func (r refusingSTS) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.Body != nil && req.Header.Get("Content-Type") == "application/x-www-form-urlencoded" {
		b, _ := io.ReadAll(req.Body)
		req.Body = io.NopCloser(bytes.NewReader(b))
		form, _ := url.ParseQuery(string(b))
		if form.Get("Action") == "AssumeRole" && strings.Contains(form.Get("RoleArn"), "::"+r.account+":") {
			body := `<ErrorResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/"><Error><Type>Sender</Type><Code>AccessDenied</Code>` +
				`<Message>User is not authorized to perform: sts:AssumeRole on resource: ` + form.Get("RoleArn") + `</Message></Error><RequestId>refused</RequestId></ErrorResponse>`
			return &http.Response{StatusCode: 403, Header: http.Header{"Content-Type": {"text/xml"}}, Body: io.NopCloser(strings.NewReader(body)), Request: req}, nil
		}
	}
	return r.next.RoundTrip(req)
}

// TestFiledInTheAffectedAccount: moto as an organisation of three accounts. A finding
// about a member account is filed in that account's Security Hub (AwsAccountId the member,
// imported through the role its stack creates); where that role is refused, in the
// security account, marked so and counted — never dropped.
func TestFiledInTheAffectedAccount(t *testing.T) {
	e := setup(t)
	var logs bytes.Buffer
	h, _ := e.handler(t, &logs)
	const member, removed = "210987654310", "210987654311" // the generated history's two accounts
	h.Member = pipeline.MemberImporters(mototest.Config(t, refusingSTS{removed, mototest.Transport()}), "aws")
	deliver(t, h, batches(generated(t, 1, 2500, 40), 100))

	// The member account's own Security Hub, as someone acting in it sees it.
	in := func(account string) []shtypes.AwsSecurityFinding {
		t.Helper()
		cfg := e.clean.Copy()
		cfg.Credentials = aws.NewCredentialsCache(stscreds.NewAssumeRoleProvider(sts.NewFromConfig(e.clean), "arn:aws:iam::"+account+":role/analyst"))
		out, err := securityhub.NewFromConfig(cfg).GetFindings(context.Background(), &securityhub.GetFindingsInput{MaxResults: aws.Int32(100)})
		if err != nil {
			t.Fatal(err)
		}
		return out.Findings
	}
	mine := in(member)
	if len(mine) == 0 {
		t.Fatalf("no finding in member account %s's Security Hub", member)
	}
	for _, f := range mine {
		if err := asff.Check(f); err != nil {
			t.Errorf("%s: %v", *f.Id, err)
		}
		if *f.AwsAccountId != member || !strings.Contains(*f.ProductArn, ":"+member+":product/"+member+"/default") || f.ProductFields[asff.FieldFiledIn] != "" {
			t.Errorf("in %s's Security Hub: account %s, product %s, marker %q", member, *f.AwsAccountId, *f.ProductArn, f.ProductFields[asff.FieldFiledIn])
		}
	}
	if got := in(removed); len(got) != 0 {
		t.Errorf("%d findings in the account whose role is refused", len(got))
	}
	// The refused account's findings: in the security account, marked, counted.
	here := 0
	for _, f := range e.findings(t) {
		switch f.ProductFields["outsider/Account"] {
		case removed:
			here++
			if err := asff.Check(f); err != nil {
				t.Errorf("%s: %v", *f.Id, err)
			}
			if *f.AwsAccountId != e.account || !strings.Contains(f.ProductFields[asff.FieldFiledIn], removed) {
				t.Errorf("a finding of %s in the security account: account %s, marker %q", removed, *f.AwsAccountId, f.ProductFields[asff.FieldFiledIn])
			}
		case member:
			t.Errorf("a finding of %s filed in the security account too", member)
		}
	}
	if here == 0 {
		t.Fatalf("no finding of %s in the security account (the history has thefts in both accounts?)", removed)
	}
	counted := 0
	for _, l := range bytes.Split(logs.Bytes(), []byte("\n")) {
		var m struct{ FiledInSecurityAccount int }
		if json.Unmarshal(l, &m) == nil {
			counted += m.FiledInSecurityAccount
		}
	}
	if counted == 0 {
		t.Error("no FiledInSecurityAccount metric")
	}
}
