package main

import (
	"github.com/aws/aws-cdk-go/awscdk/v2"
	"github.com/aws/aws-cdk-go/awscdk/v2/awsevents"
	"github.com/aws/aws-cdk-go/awscdk/v2/awseventstargets"
	"github.com/aws/aws-cdk-go/awscdk/v2/awsiam"
	"github.com/aws/constructs-go/constructs/v10"
	"github.com/aws/jsii-runtime-go"
	"github.com/cdklabs/cdk-nag-go/cdknag/v2"

	"github.com/outsider-sec/outsider/pkg/config"
)

// inventoryRolePrefix names the read-only inventory role, one per region of a member
// account (a StackSet deploys the stack to every region; role names are global).
const inventoryRolePrefix = config.InventoryRolePrefix

// NewForwarderStack is what each member account needs: a rule that forwards its CloudTrail
// API calls (same pattern, same state) to the security account's bus, the role EventBridge
// uses for that, the role the detector files this account's findings with, and a
// read-only role the security account's refresher assumes to list the account's Lambda
// functions (the inventory, off by default).
// It takes its settings as parameters and needs no bootstrap, so that it deploys as a
// service-managed StackSet to an organisational unit.
func NewForwarderStack(scope constructs.Construct, id string, props *awscdk.StackProps) awscdk.Stack {
	if props == nil {
		props = &awscdk.StackProps{}
	}
	props.Synthesizer = awscdk.NewDefaultStackSynthesizer(&awscdk.DefaultStackSynthesizerProps{GenerateBootstrapVersionRule: jsii.Bool(false)})
	stack := awscdk.NewStack(scope, &id, props)
	central := awscdk.NewCfnParameter(stack, jsii.String("CentralEventBusArn"), &awscdk.CfnParameterProps{
		Type:           jsii.String("String"),
		Description:    jsii.String("ARN of the security account's event bus (the detector stack's EventBusArn output)"),
		AllowedPattern: jsii.String(`^arn:aws[a-z-]*:events:[a-z0-9-]+:[0-9]{12}:event-bus/.+$`),
	})
	awscdk.NewCfnParameter(stack, jsii.String("SecurityAccountId"), &awscdk.CfnParameterProps{
		Type:           jsii.String("String"),
		Description:    jsii.String("The security account running the detector"),
		AllowedPattern: jsii.String(`^[0-9]{12}$`),
	})

	inventoryOn := awscdk.NewCfnParameter(stack, jsii.String("Inventory"), &awscdk.CfnParameterProps{
		Type:          jsii.String("String"),
		Default:       jsii.String("false"),
		AllowedValues: jsii.Strings("false", "true"),
		Description: jsii.String("true: create the read-only role the security account's refresher assumes to list this account's Lambda functions " +
			"(lambda:ListFunctions, which returns every function's environment variables). Off by default: CloudTrail teaches the detector every function that runs."),
	})

	// Only EventBridge acting for this account's own rules may use the role.
	// https://docs.aws.amazon.com/IAM/latest/UserGuide/confused-deputy.html
	forward := awsiam.NewRole(stack, jsii.String("ForwardRole"), &awsiam.RoleProps{
		AssumedBy: awsiam.NewServicePrincipal(jsii.String("events.amazonaws.com"), nil).WithConditions(&map[string]any{
			"StringEquals": map[string]any{"aws:SourceAccount": *stack.Account()},
		}),
		Description: jsii.String("Outsider: EventBridge forwards CloudTrail API calls to the security account"),
	})
	target := awsevents.EventBus_FromEventBusArn(stack, jsii.String("CentralBus"), central.ValueAsString())
	rule := awsevents.NewRule(stack, jsii.String("Forward"), &awsevents.RuleProps{
		EventPattern: &awsevents.EventPattern{
			Source:     awsevents.Match_Prefix(jsii.String("aws.")),
			DetailType: jsii.Strings("AWS API Call via CloudTrail"),
			Detail:     ptr(eventPattern()["detail"].(map[string]any)),
		},
		Description: jsii.String("Outsider: forward the CloudTrail API calls the detector uses, read-only ones included"),
		Targets:     &[]awsevents.IRuleTarget{awseventstargets.NewEventBus(target, &awseventstargets.EventBusProps{Role: forward})},
	})
	rule.Node().DefaultChild().(awsevents.CfnRule).SetState(jsii.String(ruleState))

	// The detector files this account's findings in its own Security Hub (as GuardDuty
	// does) through this role: BatchImportFindings on the account's default product, for
	// the detector's role only. Without it (or with Security Hub off here), they are filed in
	// the security account, marked.
	// https://docs.aws.amazon.com/securityhub/1.0/APIReference/API_BatchImportFindings.html
	importer := awsiam.NewRole(stack, jsii.String("FindingsImporterRole"), &awsiam.RoleProps{
		RoleName:    awscdk.Fn_Sub(jsii.String(config.ImporterRolePrefix+"${AWS::Region}"), nil),
		AssumedBy:   awsiam.NewArnPrincipal(awscdk.Fn_Sub(jsii.String("arn:${AWS::Partition}:iam::${SecurityAccountId}:role/"+detectorRoleName), nil)),
		Description: jsii.String("Outsider: the security account's detector files this account's findings in its Security Hub"),
	})
	allow(importer, "ImportOwnFindings", *awscdk.Fn_Sub(jsii.String("arn:${AWS::Partition}:securityhub:${AWS::Region}:${AWS::AccountId}:product/${AWS::AccountId}/default"), nil), "securityhub:BatchImportFindings")

	inventory := awsiam.NewRole(stack, jsii.String("InventoryRole"), &awsiam.RoleProps{
		RoleName:    awscdk.Fn_Sub(jsii.String(inventoryRolePrefix+"${AWS::Region}"), nil),
		AssumedBy:   awsiam.NewArnPrincipal(awscdk.Fn_Sub(jsii.String("arn:${AWS::Partition}:iam::${SecurityAccountId}:role/"+refresherRoleName), nil)),
		Description: jsii.String("Outsider: the security account lists this account's Lambda functions and their roles (the inventory)"),
	})
	// Only what the inventory calls: ListFunctions. It returns each function's name, role
	// and configuration, environment variables included (GetFunction would add the code's
	// location): whoever holds the refresher's role can read them. Hence off by default.
	// https://docs.aws.amazon.com/lambda/latest/api/API_ListFunctions.html
	allow(inventory, "ListFunctions", "*", "lambda:ListFunctions") // ListFunctions takes no resource
	on := awscdk.NewCfnCondition(stack, jsii.String("InventoryOn"), &awscdk.CfnConditionProps{
		Expression: awscdk.Fn_ConditionEquals(inventoryOn.ValueAsString(), jsii.String("true")),
	})
	for _, c := range *inventory.Node().FindAll(constructs.ConstructOrder_PREORDER) {
		if r, ok := c.(awscdk.CfnResource); ok {
			r.CfnOptions().SetCondition(on)
		}
	}

	nagSuppress(inventory, []*cdknag.NagPackSuppression{
		{Id: jsii.String("AwsSolutions-IAM5"), Reason: jsii.String("lambda:ListFunctions supports no resource-level permission (Service Authorization Reference, AWS Lambda): its resource can only be *."),
			AppliesTo: &[]any{"Resource::*"}},
	})
	return stack
}
