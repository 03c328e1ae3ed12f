package main

import (
	"fmt"
	"net/netip"
	"regexp"
	"strings"

	"github.com/aws/aws-cdk-go/awscdk/v2"
	"github.com/aws/aws-cdk-go/awscdk/v2/awssecurityhub"
	"github.com/aws/jsii-runtime-go"

	"github.com/outsider-sec/outsider/pkg/asff"
)

// A suppression is one entry of the suppress setting: Outsider's future findings that match
// it are set SUPPRESSED by a Security Hub automation rule, the way a team suppresses any
// finding, and visible as such (never dropped by the detector).
//
//	function=<function ARN>   findings about that function
//	role=<role ARN>           findings about that execution role
//	principal=<ARN>           findings of a role that principal assumed (a developer's own use)
//	cidr=<a.b.c.0/24>         findings with a source address in that network (/8, /16, /24, /32)
//
// Automation rules apply in the account that creates them and, when it is Security Hub's
// administrator, to its member accounts' findings (the findings are filed there).
// https://docs.aws.amazon.com/securityhub/latest/userguide/automation-rules.html
type suppression struct{ kind, value string }

var (
	functionARN = regexp.MustCompile(`^arn:aws[a-z-]*:lambda:[a-z0-9-]+:[0-9]{12}:function:[A-Za-z0-9_-]{1,64}$`)
	roleARN     = regexp.MustCompile(`^arn:aws[a-z-]*:iam::[0-9]{12}:role/[\w+=,.@/-]{1,512}$`)
	// principalARN is an IAM user or role: who may invoke the drill's canary.
	principalARN = regexp.MustCompile(`^arn:aws[a-z-]*:iam::[0-9]{12}:(user|role)/[\w+=,.@/-]{1,512}$`)
	anyARN       = regexp.MustCompile(`^arn:aws[a-z-]*:[a-z0-9-]+:[a-z0-9-]*:[0-9]{0,12}:[^,\s]{1,1000}$`)
)

// parseSuppressions reads the suppress setting: comma-separated KIND=VALUE entries.
func parseSuppressions(v string) ([]suppression, error) {
	var out []suppression
	var errs []string
	for _, e := range strings.Split(v, ",") {
		if e = strings.TrimSpace(e); e == "" {
			continue
		}
		kind, value, _ := strings.Cut(e, "=")
		ok := false
		switch kind {
		case "function":
			ok = functionARN.MatchString(value)
		case "role":
			ok = roleARN.MatchString(value)
		case "principal":
			ok = anyARN.MatchString(value)
		case "cidr":
			p, err := netip.ParsePrefix(value)
			ok = err == nil && p.Addr().Is4() && p.Bits()%8 == 0 && p.Bits() > 0 && p == p.Masked()
		}
		if !ok {
			errs = append(errs, fmt.Sprintf("%q is not function=<function ARN>, role=<role ARN>, principal=<ARN> or cidr=<IPv4 network of /8, /16, /24 or /32> (Security Hub's rules match addresses by prefix; for other networks use trustedCidrs)", e))
			continue
		}
		out = append(out, suppression{kind, value})
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("%s: %s", ctxSuppress, strings.Join(errs, "; "))
	}
	return out, nil
}

// criteria is what the rule matches, besides being Outsider's.
func (s suppression) criteria() *awssecurityhub.CfnAutomationRule_AutomationRulesFindingFiltersProperty {
	c := &awssecurityhub.CfnAutomationRule_AutomationRulesFindingFiltersProperty{
		ProductName: &[]any{&awssecurityhub.CfnAutomationRule_StringFilterProperty{Comparison: jsii.String("EQUALS"), Value: jsii.String("Outsider")}},
	}
	tag := func(key, value string) {
		c.ResourceTags = &[]any{&awssecurityhub.CfnAutomationRule_MapFilterProperty{Comparison: jsii.String("CONTAINS"), Key: jsii.String(key), Value: jsii.String(value)}}
	}
	switch s.kind {
	case "function", "role":
		c.ResourceId = &[]any{&awssecurityhub.CfnAutomationRule_StringFilterProperty{Comparison: jsii.String("EQUALS"), Value: jsii.String(s.value)}}
	case "principal":
		tag(asff.TagAssumedBy, ","+s.value+",")
	case "cidr":
		p := netip.MustParsePrefix(s.value)
		octets := strings.Split(p.Addr().String(), ".")[:p.Bits()/8]
		prefix := "," + strings.Join(octets, ".") + "."
		if p.Bits() == 32 {
			prefix = "," + p.Addr().String() + ","
		}
		tag(asff.TagSourceIPs, prefix)
	}
	return c
}

// addSuppressions adds an automation rule per suppression.
func addSuppressions(stack awscdk.Stack, ss []suppression) {
	for i, s := range ss {
		name := fmt.Sprintf("Outsider: suppress %s %s", s.kind, s.value)
		if len(name) > 256 {
			name = name[:256]
		}
		awssecurityhub.NewCfnAutomationRule(stack, jsii.String(fmt.Sprintf("Suppress%d", i+1)), &awssecurityhub.CfnAutomationRuleProps{
			RuleName:    jsii.String(name),
			RuleOrder:   jsii.Number(float64(i + 1)),
			RuleStatus:  jsii.String("ENABLED"),
			Description: jsii.String("Outsider's findings matching the stack's suppress setting (" + s.kind + "=" + s.value + ") are set SUPPRESSED: still in Security Hub, out of the default views."),
			Criteria:    s.criteria(),
			// Workflow only: an analyst's Note and fields are left alone.
			Actions: &[]any{&awssecurityhub.CfnAutomationRule_AutomationRulesActionProperty{
				Type: jsii.String("FINDING_FIELDS_UPDATE"),
				FindingFieldsUpdate: &awssecurityhub.CfnAutomationRule_AutomationRulesFindingFieldsUpdateProperty{
					Workflow: &awssecurityhub.CfnAutomationRule_WorkflowUpdateProperty{Status: jsii.String("SUPPRESSED")},
				},
			}},
		})
	}
}
