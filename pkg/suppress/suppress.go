// Package suppress turns "this is ours" into Security Hub automation rules that set
// Outsider's future matching findings SUPPRESSED (Workflow only: an analyst's Note and
// fields stay), the way a team suppresses any finding. The stack makes them from its
// suppress setting; `outsider suppress` makes one with the operator's credentials.
//
//	function=<function ARN>   findings about that function
//	role=<role ARN>           findings about that execution role
//	principal=<ARN>           findings of a role that principal assumed (a developer's own use)
//	cidr=<a.b.c.0/24>         findings with a source address in that network (/8, /16, /24, /32)
//
// Automation rules have no address or ProductFields criteria: findings carry their source
// addresses and assumers as tags of the role's resource (asff.TagSourceIPs,
// asff.TagAssumedBy), comma-delimited, which a rule matches with CONTAINS. Rules act in the
// account that makes them and, when it is Security Hub's administrator, on its members'
// findings.
// https://docs.aws.amazon.com/securityhub/latest/userguide/automation-rules.html
package suppress

import (
	"context"
	"fmt"
	"net/netip"
	"regexp"
	"strings"
	"sync"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/securityhub"
	"github.com/aws/aws-sdk-go-v2/service/securityhub/types"

	"github.com/outsider-sec/outsider/pkg/asff"
)

// Entry is one suppression.
type Entry struct{ Kind, Value string }

// The patterns are compiled when first used: their counted repetitions are large programs
// (14 ms at every start of the replay and of the Lambda, which never use them).
var (
	functionARN = sync.OnceValue(func() *regexp.Regexp {
		return regexp.MustCompile(`^arn:aws[a-z-]*:lambda:[a-z0-9-]+:[0-9]{12}:function:[A-Za-z0-9_-]{1,64}$`)
	})
	roleARN = sync.OnceValue(func() *regexp.Regexp {
		return regexp.MustCompile(`^arn:aws[a-z-]*:iam::[0-9]{12}:role/[\w+=,.@/-]{1,512}$`)
	})
	anyARN = sync.OnceValue(func() *regexp.Regexp {
		return regexp.MustCompile(`^arn:aws[a-z-]*:[a-z0-9-]+:[a-z0-9-]*:[0-9]{0,12}:[^,\s]{1,1000}$`)
	})
)

// Parse reads entries, comma-separated KIND=VALUE; every bad one is named.
func Parse(s string) ([]Entry, error) {
	var out []Entry
	var bad []string
	for _, e := range strings.Split(s, ",") {
		if e = strings.TrimSpace(e); e == "" {
			continue
		}
		kind, value, _ := strings.Cut(e, "=")
		ok := false
		switch kind {
		case "function":
			ok = functionARN().MatchString(value)
		case "role":
			ok = roleARN().MatchString(value)
		case "principal":
			ok = anyARN().MatchString(value)
		case "cidr":
			p, err := netip.ParsePrefix(value)
			ok = err == nil && p.Addr().Is4() && p.Bits()%8 == 0 && p.Bits() > 0 && p == p.Masked()
		}
		if !ok {
			bad = append(bad, fmt.Sprintf("%q is not function=<function ARN>, role=<role ARN>, principal=<ARN> or cidr=<IPv4 network of /8, /16, /24 or /32> "+
				"(Security Hub's rules match addresses by prefix; for other networks use trusted CIDRs)", e))
			continue
		}
		out = append(out, Entry{kind, value})
	}
	if len(bad) > 0 {
		return nil, fmt.Errorf("suppress: %s", strings.Join(bad, "; "))
	}
	return out, nil
}

// Name is the rule's name (at most 256 characters).
func (e Entry) Name() string {
	n := fmt.Sprintf("Outsider: suppress %s %s", e.Kind, e.Value)
	if len(n) > 256 {
		n = n[:256]
	}
	return n
}

// Description says what the rule does.
func (e Entry) Description() string {
	return "Outsider's findings matching " + e.Kind + "=" + e.Value + " are set SUPPRESSED: still in Security Hub, out of the default views."
}

// Match is what a rule matches besides being Outsider's: a resource ARN, or a tag of the
// role's resource containing a value.
func (e Entry) Match() (resourceID, tagKey, tagValue string) {
	switch e.Kind {
	case "function", "role":
		return e.Value, "", ""
	case "principal":
		return "", asff.TagAssumedBy, "," + e.Value + ","
	}
	p := netip.MustParsePrefix(e.Value)
	if p.Bits() == 32 {
		return "", asff.TagSourceIPs, "," + p.Addr().String() + ","
	}
	octets := strings.Split(p.Addr().String(), ".")[:p.Bits()/8]
	return "", asff.TagSourceIPs, "," + strings.Join(octets, ".") + "."
}

// Input is the CreateAutomationRule request of an entry, at a rule order.
func (e Entry) Input(order int32) *securityhub.CreateAutomationRuleInput {
	c := &types.AutomationRulesFindingFilters{
		ProductName: []types.StringFilter{{Comparison: types.StringFilterComparisonEquals, Value: aws.String("Outsider")}},
	}
	id, key, value := e.Match()
	if id != "" {
		c.ResourceId = []types.StringFilter{{Comparison: types.StringFilterComparisonEquals, Value: aws.String(id)}}
	} else {
		c.ResourceTags = []types.MapFilter{{Comparison: types.MapFilterComparisonContains, Key: aws.String(key), Value: aws.String(value)}}
	}
	return &securityhub.CreateAutomationRuleInput{
		RuleName: aws.String(e.Name()), RuleOrder: aws.Int32(order), RuleStatus: types.RuleStatusEnabled, Description: aws.String(e.Description()),
		Criteria: c,
		Actions: []types.AutomationRulesAction{{
			Type:                types.AutomationRulesActionTypeFindingFieldsUpdate,
			FindingFieldsUpdate: &types.AutomationRulesFindingFieldsUpdate{Workflow: &types.WorkflowUpdate{Status: types.WorkflowStatusSuppressed}},
		}},
	}
}

// Creator is the part of the Security Hub client Create calls.
type Creator interface {
	CreateAutomationRule(context.Context, *securityhub.CreateAutomationRuleInput, ...func(*securityhub.Options)) (*securityhub.CreateAutomationRuleOutput, error)
}

// Create makes a rule per entry, at order (and up), and returns their ARNs.
func Create(ctx context.Context, c Creator, entries []Entry, order int32) ([]string, error) {
	var arns []string
	for i, e := range entries {
		out, err := c.CreateAutomationRule(ctx, e.Input(order+int32(i)))
		if err != nil {
			return arns, fmt.Errorf("suppress: create the rule %q: %w", e.Name(), err)
		}
		arns = append(arns, aws.ToString(out.RuleArn))
	}
	return arns, nil
}
