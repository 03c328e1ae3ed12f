package suppress

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/securityhub"
	"github.com/aws/aws-sdk-go-v2/service/securityhub/types"

	"github.com/outsider-sec/outsider/pkg/asff"
	"github.com/outsider-sec/outsider/pkg/detect"
)

type creator struct {
	got []*securityhub.CreateAutomationRuleInput
}

func (c *creator) CreateAutomationRule(_ context.Context, in *securityhub.CreateAutomationRuleInput, _ ...func(*securityhub.Options)) (*securityhub.CreateAutomationRuleOutput, error) {
	c.got = append(c.got, in)
	return &securityhub.CreateAutomationRuleOutput{RuleArn: aws.String("arn:aws:securityhub:eu-west-1:111122223333:automation-rule/" + *in.RuleName)}, nil
}

// matches is how Security Hub applies a rule's criteria to a finding, for the filters the
// rules use: ProductName EQUALS, ResourceId EQUALS (any resource), ResourceTags CONTAINS.
func matches(in *securityhub.CreateAutomationRuleInput, f types.AwsSecurityFinding) bool {
	c := in.Criteria
	if *f.ProductName != *c.ProductName[0].Value {
		return false
	}
	for _, r := range f.Resources {
		if len(c.ResourceId) > 0 && *r.Id == *c.ResourceId[0].Value {
			return true
		}
		if len(c.ResourceTags) > 0 && strings.Contains(r.Tags[*c.ResourceTags[0].Key], *c.ResourceTags[0].Value) {
			return true
		}
	}
	return false
}

// TestRules: each kind of entry makes a rule that sets SUPPRESSED (and nothing else), and
// that matches the findings it names — and not their neighbours.
func TestRules(t *testing.T) {
	product := asff.Product{Partition: "aws", Region: "eu-west-1", Account: "111122223333"}
	finding := func(fn, ip, by string) types.AwsSecurityFinding {
		t0 := time.Date(2026, 12, 6, 0, 0, 0, 0, time.UTC)
		return asff.Build(detect.Finding{
			ID: "f", Title: detect.TitleRemote, Severity: "MEDIUM", Account: "111122223333", Partition: "aws", Region: "eu-west-1",
			SubjectKind: detect.SubjectFunction, Subject: fn, Function: fn, FunctionARN: "arn:aws:lambda:eu-west-1:111122223333:function:" + fn,
			Role: fn + "-role", RoleARN: "arn:aws:iam::111122223333:role/" + fn + "-role", PeriodStart: t0, FirstSeen: t0, LastSeen: t0, Count: 1,
			AccessKeys: []string{"ASIAX"}, Sources: []detect.Source{{IP: "198.51.100.1"}, {IP: ip}}, IssuedBy: by,
		}, product)
	}
	entries, err := Parse("function=arn:aws:lambda:eu-west-1:111122223333:function:dev-tool, principal=arn:aws:iam::111122223333:user/alice,cidr=203.0.113.0/24,cidr=192.0.2.7/32")
	if err != nil {
		t.Fatal(err)
	}
	c := &creator{}
	arns, err := Create(context.Background(), c, entries, 10)
	if err != nil || len(arns) != 4 || *c.got[3].RuleOrder != 13 {
		t.Fatalf("%v %v", arns, err)
	}
	for _, in := range c.got {
		if a := in.Actions[0]; a.Type != types.AutomationRulesActionTypeFindingFieldsUpdate || a.FindingFieldsUpdate.Workflow.Status != types.WorkflowStatusSuppressed ||
			a.FindingFieldsUpdate.Note != nil || a.FindingFieldsUpdate.UserDefinedFields != nil || in.RuleStatus != types.RuleStatusEnabled {
			t.Errorf("rule %s does more than suppress: %+v", *in.RuleName, a)
		}
	}
	for i, tc := range []struct{ yes, no types.AwsSecurityFinding }{
		{finding("dev-tool", "198.51.100.9", ""), finding("dev-tool-2", "198.51.100.9", "")},
		{finding("api", "198.51.100.9", "arn:aws:iam::111122223333:user/alice"), finding("api", "198.51.100.9", "arn:aws:iam::111122223333:user/alice2")},
		{finding("api", "203.0.113.77", ""), finding("api", "1.203.0.113", "")},
		{finding("api", "192.0.2.7", ""), finding("api", "192.0.2.70", "")},
	} {
		if !matches(c.got[i], tc.yes) {
			t.Errorf("%s does not match the finding it names", *c.got[i].RuleName)
		}
		if matches(c.got[i], tc.no) {
			t.Errorf("%s matches a neighbour too", *c.got[i].RuleName)
		}
	}
	for _, bad := range []string{"function=dev-tool", "cidr=203.0.113.0/23", "cidr=2001:db8::/32", "cidr=203.0.113.1/24", "host=x", "role=alice"} {
		if _, err := Parse(bad); err == nil {
			t.Errorf("%s accepted", bad)
		}
	}
}
