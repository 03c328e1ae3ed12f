package main

import (
	"fmt"
	"regexp"

	"github.com/aws/aws-cdk-go/awscdk/v2"
	"github.com/aws/aws-cdk-go/awscdk/v2/awssecurityhub"
	"github.com/aws/jsii-runtime-go"

	"github.com/outsider-sec/outsider/pkg/suppress"
)

// principalARN is an IAM user or role: who may invoke the drill's canary.
var principalARN = regexp.MustCompile(`^arn:aws[a-z-]*:iam::[0-9]{12}:(user|role)/[\w+=,.@/-]{1,512}$`)

// addSuppressions adds a Security Hub automation rule per entry of the suppress setting
// (pkg/suppress says what each matches; `outsider suppress` makes the same rules by API).
func addSuppressions(stack awscdk.Stack, entries []suppress.Entry) {
	for i, e := range entries {
		criteria := &awssecurityhub.CfnAutomationRule_AutomationRulesFindingFiltersProperty{
			ProductName: &[]any{&awssecurityhub.CfnAutomationRule_StringFilterProperty{Comparison: jsii.String("EQUALS"), Value: jsii.String("Outsider")}},
		}
		if id, key, value := e.Match(); id != "" {
			criteria.ResourceId = &[]any{&awssecurityhub.CfnAutomationRule_StringFilterProperty{Comparison: jsii.String("EQUALS"), Value: jsii.String(id)}}
		} else {
			criteria.ResourceTags = &[]any{&awssecurityhub.CfnAutomationRule_MapFilterProperty{Comparison: jsii.String("CONTAINS"), Key: jsii.String(key), Value: jsii.String(value)}}
		}
		awssecurityhub.NewCfnAutomationRule(stack, jsii.String(fmt.Sprintf("Suppress%d", i+1)), &awssecurityhub.CfnAutomationRuleProps{
			RuleName:    jsii.String(e.Name()),
			RuleOrder:   jsii.Number(float64(i + 1)),
			RuleStatus:  jsii.String("ENABLED"),
			Description: jsii.String(e.Description()),
			Criteria:    criteria,
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
