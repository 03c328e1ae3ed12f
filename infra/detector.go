package main

import (
	"fmt"
	"strings"

	"github.com/aws/aws-cdk-go/awscdk/v2"
	"github.com/aws/aws-cdk-go/awscdk/v2/awscloudwatch"
	"github.com/aws/aws-cdk-go/awscdk/v2/awscloudwatchactions"
	"github.com/aws/aws-cdk-go/awscdk/v2/awsdynamodb"
	"github.com/aws/aws-cdk-go/awscdk/v2/awsevents"
	"github.com/aws/aws-cdk-go/awscdk/v2/awseventstargets"
	"github.com/aws/aws-cdk-go/awscdk/v2/awsiam"
	"github.com/aws/aws-cdk-go/awscdk/v2/awskms"
	"github.com/aws/aws-cdk-go/awscdk/v2/awslambda"
	"github.com/aws/aws-cdk-go/awscdk/v2/awslambdaeventsources"
	"github.com/aws/aws-cdk-go/awscdk/v2/awslogs"
	"github.com/aws/aws-cdk-go/awscdk/v2/awss3"
	"github.com/aws/aws-cdk-go/awscdk/v2/awssns"
	"github.com/aws/aws-cdk-go/awscdk/v2/awssnssubscriptions"
	"github.com/aws/aws-cdk-go/awscdk/v2/awssqs"
	"github.com/aws/constructs-go/constructs/v10"
	"github.com/aws/jsii-runtime-go"
	"github.com/cdklabs/cdk-nag-go/cdknag/v2"

	"github.com/outsider-sec/outsider/pkg/config"
	"github.com/outsider-sec/outsider/pkg/detect"
	"github.com/outsider-sec/outsider/pkg/silence"
)

// Names other stacks and the documentation refer to.
const (
	busName           = "outsider"
	detectorRoleName  = "outsider-detector"
	refresherRoleName = "outsider-refresher"
)

// NewDetectorStack is the security account's side: the event bus the organisation sends
// to, the queue, the detector function, its table, the findings topic and the alarms.
func NewDetectorStack(scope constructs.Construct, id string, s Settings, props *awscdk.StackProps) awscdk.Stack {
	stack := awscdk.NewStack(scope, &id, props)
	account := stack.Account()

	// Encryption key of the topic: CloudWatch alarms can only publish to an encrypted topic
	// whose key lets them, which an AWS-managed key does not.
	// https://docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/AlarmThatSendsEmail.html
	key := awskms.NewKey(stack, jsii.String("TopicKey"), &awskms.KeyProps{
		Description:       jsii.String("Outsider: findings topic"),
		EnableKeyRotation: jsii.Bool(true),
	})
	key.AddToResourcePolicy(awsiam.NewPolicyStatement(&awsiam.PolicyStatementProps{
		Sid:        jsii.String("CloudWatchAlarmsPublish"),
		Principals: &[]awsiam.IPrincipal{awsiam.NewServicePrincipal(jsii.String("cloudwatch.amazonaws.com"), nil)},
		Actions:    jsii.Strings("kms:Decrypt", "kms:GenerateDataKey*"),
		Resources:  jsii.Strings("*"), // in a key policy, "*" is this key
		Conditions: &map[string]any{
			"StringEquals": map[string]any{"aws:SourceAccount": *account},
			"ArnLike":      map[string]any{"aws:SourceArn": *awscdk.Fn_Sub(jsii.String("arn:${AWS::Partition}:cloudwatch:${AWS::Region}:${AWS::AccountId}:alarm:*"), nil)},
		},
	}), nil)
	// Findings (one email per new finding at emailSeverity or above) and the operational
	// alarms go to topics of their own: a team routes and filters them apart.
	topic := awssns.NewTopic(stack, jsii.String("Findings"), &awssns.TopicProps{
		DisplayName: jsii.String("Outsider findings"),
		MasterKey:   key,
		EnforceSSL:  jsii.Bool(true),
	})
	if s.Email != "" {
		topic.AddSubscription(awssnssubscriptions.NewEmailSubscription(jsii.String(s.Email), nil))
	}
	alarmTopic := awssns.NewTopic(stack, jsii.String("Alarms"), &awssns.TopicProps{
		DisplayName: jsii.String("Outsider alarms"),
		MasterKey:   key,
		EnforceSSL:  jsii.Bool(true),
	})
	// CloudWatch alarms of this account may publish: alarms must reach a person.
	// https://docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/AlarmThatSendsEmail.html
	alarmTopic.AddToResourcePolicy(awsiam.NewPolicyStatement(&awsiam.PolicyStatementProps{
		Sid:        jsii.String("CloudWatchAlarmsPublish"),
		Principals: &[]awsiam.IPrincipal{awsiam.NewServicePrincipal(jsii.String("cloudwatch.amazonaws.com"), nil)},
		Actions:    jsii.Strings("sns:Publish"),
		Resources:  jsii.Strings(*alarmTopic.TopicArn()),
		Conditions: &map[string]any{
			"StringEquals": map[string]any{"aws:SourceAccount": *account},
			"ArnLike":      map[string]any{"aws:SourceArn": *awscdk.Fn_Sub(jsii.String("arn:${AWS::Partition}:cloudwatch:${AWS::Region}:${AWS::AccountId}:alarm:*"), nil)},
		},
	}))
	if s.AlarmEmail != "" {
		alarmTopic.AddSubscription(awssnssubscriptions.NewEmailSubscription(jsii.String(s.AlarmEmail), nil))
	}

	table := awsdynamodb.NewTable(stack, jsii.String("State"), &awsdynamodb.TableProps{
		PartitionKey:        &awsdynamodb.Attribute{Name: jsii.String(config.TableKey), Type: awsdynamodb.AttributeType_STRING},
		BillingMode:         awsdynamodb.BillingMode_PAY_PER_REQUEST,
		TimeToLiveAttribute: jsii.String(config.TableExpires),
		PointInTimeRecoverySpecification: &awsdynamodb.PointInTimeRecoverySpecification{
			PointInTimeRecoveryEnabled: jsii.Bool(true),
		},
		Encryption:    awsdynamodb.TableEncryption_AWS_MANAGED,
		RemovalPolicy: awscdk.RemovalPolicy_RETAIN, // the baselines outlive a redeploy
	})

	dlq := awssqs.NewQueue(stack, jsii.String("DeadLetters"), &awssqs.QueueProps{
		Encryption:      awssqs.QueueEncryption_SQS_MANAGED,
		EnforceSSL:      jsii.Bool(true),
		RetentionPeriod: awscdk.Duration_Days(jsii.Number(14)),
	})
	// Visibility timeout six times the function's, as Lambda advises for SQS sources.
	// https://docs.aws.amazon.com/lambda/latest/dg/services-sqs-configure.html
	timeout := awscdk.Duration_Seconds(jsii.Number(120))
	queue := awssqs.NewQueue(stack, jsii.String("Events"), &awssqs.QueueProps{
		Encryption:        awssqs.QueueEncryption_SQS_MANAGED,
		EnforceSSL:        jsii.Bool(true),
		VisibilityTimeout: awscdk.Duration_Seconds(jsii.Number(720)),
		// SQS's longest: a backlog has 14 days to drain (the age alarm fires after 15
		// minutes). A message that fails goes to the DLQ after 5 receives, an hour at
		// most, long before it could expire here; the DLQ keeps it what is left of its 14
		// days (an expiry counts from the first enqueue on standard queues).
		// https://docs.aws.amazon.com/AWSSimpleQueueService/latest/SQSDeveloperGuide/setting-up-dead-letter-queue-retention.html
		RetentionPeriod: awscdk.Duration_Days(jsii.Number(14)),
		DeadLetterQueue: &awssqs.DeadLetterQueue{Queue: dlq, MaxReceiveCount: jsii.Number(5)},
	})

	bus := awsevents.NewEventBus(stack, jsii.String("Bus"), &awsevents.EventBusProps{EventBusName: jsii.String(busName)})
	switch {
	case s.OrganizationID != "":
		bus.AddToResourcePolicy(awsiam.NewPolicyStatement(&awsiam.PolicyStatementProps{
			Sid:        jsii.String("OrganizationSends"),
			Principals: &[]awsiam.IPrincipal{awsiam.NewAnyPrincipal()},
			Actions:    jsii.Strings("events:PutEvents"),
			Resources:  jsii.Strings(*bus.EventBusArn()),
			Conditions: &map[string]any{"StringEquals": map[string]any{"aws:PrincipalOrgID": s.OrganizationID}},
		}))
	case len(s.MemberAccounts) > 0:
		var ps []awsiam.IPrincipal
		for _, a := range s.MemberAccounts {
			ps = append(ps, awsiam.NewAccountPrincipal(jsii.String(a)))
		}
		bus.AddToResourcePolicy(awsiam.NewPolicyStatement(&awsiam.PolicyStatementProps{
			Sid: jsii.String("MemberAccountsSend"), Principals: &ps,
			Actions: jsii.Strings("events:PutEvents"), Resources: jsii.Strings(*bus.EventBusArn()),
		}))
	}
	pattern := &awsevents.EventPattern{
		Source:     awsevents.Match_Prefix(jsii.String("aws.")),
		DetailType: jsii.Strings("AWS API Call via CloudTrail"),
		Detail:     ptr(eventPattern()["detail"].(map[string]any)),
	}
	var ruleArns []any
	for _, r := range []struct {
		id  string
		bus awsevents.IEventBus
	}{
		{"FromOrganization", bus},
		{"FromThisAccount", awsevents.EventBus_FromEventBusName(stack, jsii.String("DefaultBus"), jsii.String("default"))},
	} {
		rule := awsevents.NewRule(stack, jsii.String(r.id), &awsevents.RuleProps{
			EventBus: r.bus, EventPattern: pattern,
			Description: jsii.String("Outsider: CloudTrail API calls the detector uses, read-only ones included"),
			Targets:     &[]awsevents.IRuleTarget{awseventstargets.NewSqsQueue(queue, nil)},
		})
		rule.Node().DefaultChild().(awsevents.CfnRule).SetState(jsii.String(ruleState))
		ruleArns = append(ruleArns, *rule.RuleArn())
	}
	// Only the two rules write the queue: the target's grant allows them, and this denies
	// every other principal, however broad its own sqs:SendMessage (power-user and CI roles
	// have it). A principal's request carries no aws:SourceArn, and a negated operator on
	// an absent key matches, so the deny applies to it.
	// https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_multi-value-conditions.html
	queue.AddToResourcePolicy(awsiam.NewPolicyStatement(&awsiam.PolicyStatementProps{
		Sid:        jsii.String("OnlyTheRulesSend"),
		Effect:     awsiam.Effect_DENY,
		Principals: &[]awsiam.IPrincipal{awsiam.NewAnyPrincipal()},
		Actions:    jsii.Strings("sqs:SendMessage"),
		Resources:  jsii.Strings(*queue.QueueArn()),
		Conditions: &map[string]any{"ArnNotEquals": map[string]any{"aws:SourceArn": ruleArns}},
	}))

	logs, role := functionRole(stack, "Detector", detectorRoleName, "Outsider detector function", awscdk.RemovalPolicy_RETAIN)
	// State: the three item calls the store makes, on its table. Its transactions need no
	// more: a transaction's puts are governed by dynamodb:PutItem.
	// https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/transaction-apis-iam.html
	allow(role, "State", *table.TableArn(), "dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:BatchWriteItem")
	// Findings: import into this account's default product only.
	// https://docs.aws.amazon.com/securityhub/latest/userguide/securityhub-custom-providers.html
	allow(role, "ImportFindings", *awscdk.Fn_Sub(jsii.String("arn:${AWS::Partition}:securityhub:${AWS::Region}:${AWS::AccountId}:product/${AWS::AccountId}/default"), nil), "securityhub:BatchImportFindings")
	// A member account's findings go to its own Security Hub, through the role its
	// forwarder stack creates (BatchImportFindings on that account's default product only,
	// trusting this role only); where it is missing or refused, here, marked.
	fileInMembers := awsiam.NewPolicyStatement(&awsiam.PolicyStatementProps{
		Sid: jsii.String("FileInMemberAccounts"), Actions: jsii.Strings("sts:AssumeRole"),
		Resources: jsii.Strings(*awscdk.Fn_Sub(jsii.String("arn:${AWS::Partition}:iam::*:role/"+config.ImporterRolePrefix+"${AWS::Region}"), nil)),
	})
	if s.OrganizationID != "" {
		// Only roles of the organisation.
		// https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_condition-keys.html#condition-keys-resourceorgid
		fileInMembers.AddCondition(jsii.String("StringEquals"), map[string]any{"aws:ResourceOrgID": s.OrganizationID})
	}
	role.AddToPolicy(fileInMembers)
	topic.GrantPublish(role)

	ranges, refresher, refresherDLQ := newRefresher(stack, table, &s)
	if s.ASNDB != "" {
		loc, _ := config.ParseS3(s.ASNDB)
		allow(role, "ReadASNDatabase", s3ObjectARN(loc), "s3:GetObject")
	}
	// The stored ip-ranges.json, and only it (HeadObject needs s3:GetObject too).
	allow(role, "ReadRanges", *ranges.ArnForObjects(jsii.String(rangesKey)), "s3:GetObject")
	env := s.env(*table.TableName(), *topic.TopicArn(), *account)
	if s.DrillPrincipal != "" {
		env[config.EnvCanaryRole] = jsii.String(canaryRoleName)
	}
	env[config.EnvIPRanges] = jsii.String("s3://" + *ranges.BucketName() + "/" + rangesKey)

	fn := awslambda.NewFunction(stack, jsii.String("Detector"), &awslambda.FunctionProps{
		Description:   jsii.String("Outsider: Lambda credentials used from outside AWS"),
		Runtime:       awslambda.Runtime_PROVIDED_AL2023(),
		Architecture:  awslambda.Architecture_ARM_64(),
		Handler:       jsii.String("bootstrap"),
		Code:          goFunctionCode("functions/detector"),
		MemorySize:    jsii.Number(512),
		Timeout:       timeout,
		Role:          role,
		LogGroup:      logs,
		LoggingFormat: awslambda.LoggingFormat_JSON,
		Environment:   &env,
		// As many as the queue's consumers: a flood elsewhere in the account cannot starve
		// the detector, nor the detector the account.
		ReservedConcurrentExecutions: reserve(s, float64(s.MaxConcurrency)),
	})
	fn.AddEventSource(awslambdaeventsources.NewSqsEventSource(queue, &awslambdaeventsources.SqsEventSourceProps{
		BatchSize:               jsii.Number(float64(s.BatchSize)),
		MaxBatchingWindow:       awscdk.Duration_Seconds(jsii.Number(20)),
		ReportBatchItemFailures: jsii.Bool(true),
		// How many containers consume the queue at once: a cap on the table's and Security
		// Hub's load, and on the account's Lambda concurrency.
		MaxConcurrency: jsii.Number(float64(s.MaxConcurrency)),
	}))

	alarm := func(id, what string, metric awscloudwatch.IMetric) {
		a := awscloudwatch.NewAlarm(stack, jsii.String(id), &awscloudwatch.AlarmProps{
			AlarmDescription:   jsii.String("Outsider: " + what),
			Metric:             metric,
			Threshold:          jsii.Number(0),
			EvaluationPeriods:  jsii.Number(1),
			ComparisonOperator: awscloudwatch.ComparisonOperator_GREATER_THAN_THRESHOLD,
			TreatMissingData:   awscloudwatch.TreatMissingData_NOT_BREACHING,
		})
		a.AddAlarmAction(awscloudwatchactions.NewSnsAction(alarmTopic))
	}
	five := &awscloudwatch.MetricOptions{Period: awscdk.Duration_Minutes(jsii.Number(5))}
	alarm("DeadLettersAlarm", "events the detector could not process are in the dead-letter queue", dlq.MetricApproximateNumberOfMessagesVisible(five))
	alarm("ErrorsAlarm", "the detector function failed", fn.MetricErrors(five))
	alarm("ThrottlesAlarm", "the detector function was throttled", fn.MetricThrottles(five))
	// The handler returns no error when some messages fail (it reports them to SQS):
	// its own metric says so.
	alarm("FailedMessagesAlarm", "the detector failed messages (they are retried, then dead-lettered)", awscloudwatch.NewMetric(&awscloudwatch.MetricProps{
		Namespace: jsii.String("Outsider"), MetricName: jsii.String("FailedMessages"), Statistic: jsii.String("Sum"), Period: awscdk.Duration_Minutes(jsii.Number(5)),
	}))
	queueAge := awscloudwatch.NewAlarm(stack, jsii.String("QueueAgeAlarm"), &awscloudwatch.AlarmProps{
		AlarmDescription:   jsii.String("Outsider: events wait more than 15 minutes in the queue (the detector is falling behind)"),
		Metric:             queue.MetricApproximateAgeOfOldestMessage(five),
		Threshold:          jsii.Number(900),
		EvaluationPeriods:  jsii.Number(1),
		ComparisonOperator: awscloudwatch.ComparisonOperator_GREATER_THAN_THRESHOLD,
		TreatMissingData:   awscloudwatch.TreatMissingData_NOT_BREACHING,
	})
	queueAge.AddAlarmAction(awscloudwatchactions.NewSnsAction(alarmTopic))
	outsiderMetric := func(name string) awscloudwatch.IMetric {
		return awscloudwatch.NewMetric(&awscloudwatch.MetricProps{
			Namespace: jsii.String("Outsider"), MetricName: jsii.String(name), Statistic: jsii.String("Sum"), Period: awscdk.Duration_Minutes(jsii.Number(5)),
		})
	}
	alarm("RangesRefusedAlarm", "a stored or downloaded ip-ranges.json does not look like AWS's and was refused (someone may be trying to blind the detector)", outsiderMetric("RangesRefused"))
	alarm("ForgedAlarm", "messages that are not AWS's EventBridge events reached the detector (someone wrote to its bus or queue)", outsiderMetric("Forged"))
	// Nobody goes quiet unseen: an alarm per account whose records stop reaching the
	// detector (a member admin disabled the forwarding rule, the trail stopped). Missing
	// data is the silence itself, so it breaches. The accounts are the security account
	// and memberAccounts; every other account the detector heard from is in the register
	// the refresher reads hourly (SilentAccounts).
	if s.SilenceHours > 0 {
		silent := awscloudwatch.NewAlarm(stack, jsii.String("SilentAccountsAlarm"), &awscloudwatch.AlarmProps{
			AlarmDescription: jsii.String(fmt.Sprintf("Outsider: accounts the detector heard from sent no CloudTrail record for %d hours "+
				"(their forwarding rule or trail may be off); the refresher's log names them", s.SilenceHours)),
			Metric: awscloudwatch.NewMetric(&awscloudwatch.MetricProps{
				Namespace: jsii.String("Outsider"), MetricName: jsii.String("SilentAccounts"), Statistic: jsii.String("Maximum"),
				Period: awscdk.Duration_Hours(jsii.Number(1)),
			}),
			Threshold:          jsii.Number(0),
			EvaluationPeriods:  jsii.Number(1),
			ComparisonOperator: awscloudwatch.ComparisonOperator_GREATER_THAN_THRESHOLD,
			// The refresher failing has its own alarm.
			TreatMissingData: awscloudwatch.TreatMissingData_NOT_BREACHING,
		})
		silent.AddAlarmAction(awscloudwatchactions.NewSnsAction(alarmTopic))
		for _, a := range append([]string{*account}, s.MemberAccounts...) {
			id := "Silence" + a
			if a == *account {
				id = "SilenceSecurityAccount"
			}
			silent := awscloudwatch.NewAlarm(stack, jsii.String(id), &awscloudwatch.AlarmProps{
				AlarmDescription: awscdk.Fn_Join(jsii.String(""), &[]*string{jsii.String("Outsider: no CloudTrail record from account "), jsii.String(a),
					jsii.String(fmt.Sprintf(" for %d hours (its forwarding rule or trail may be off)", s.SilenceHours))}),
				Metric: awscloudwatch.NewMetric(&awscloudwatch.MetricProps{
					Namespace: jsii.String("Outsider"), MetricName: jsii.String("AccountRecords"), Statistic: jsii.String("Sum"),
					Period: awscdk.Duration_Hours(jsii.Number(1)), DimensionsMap: &map[string]*string{"Account": jsii.String(a)},
				}),
				Threshold:          jsii.Number(1),
				EvaluationPeriods:  jsii.Number(float64(s.SilenceHours)),
				ComparisonOperator: awscloudwatch.ComparisonOperator_LESS_THAN_THRESHOLD,
				TreatMissingData:   awscloudwatch.TreatMissingData_BREACHING,
			})
			silent.AddAlarmAction(awscloudwatchactions.NewSnsAction(alarmTopic))
		}
	}
	alarm("RefresherErrorsAlarm", "the refresher of AWS's IP ranges and the Lambda inventory failed", refresher.MetricErrors(five))
	alarm("RefresherDeadLettersAlarm", "refresher invocations failed after their retries", refresherDLQ.MetricApproximateNumberOfMessagesVisible(five))

	newDashboard(stack, fn, queue, s)
	addSuppressions(stack, s.Suppress)
	if s.DrillPrincipal != "" {
		canary := newCanary(stack, s.DrillPrincipal)
		awscdk.NewCfnOutput(stack, jsii.String("CanaryFunction"), &awscdk.CfnOutputProps{
			Value: canary.FunctionName(), Description: jsii.String("the drill's canary: outsider drill --function <this>"),
		})
	}

	out := func(id, value, what string) {
		awscdk.NewCfnOutput(stack, jsii.String(id), &awscdk.CfnOutputProps{Value: jsii.String(value), Description: jsii.String(what)})
	}
	out("EventBusArn", *bus.EventBusArn(), "member accounts forward CloudTrail API calls to this bus")
	out("StateTable", *table.TableName(), "the detector's state (replay --store dynamodb://TABLE backfills it)")
	out("FindingsTopic", *topic.TopicArn(), "one message per new finding (emailSeverity and above)")
	out("AlarmsTopic", *alarmTopic.TopicArn(), "the operational alarms")
	out("DeadLetterQueue", *dlq.QueueUrl(), "events the detector could not process")
	if s.Email == "" {
		out("Notifications", "none: deploy with -c notificationEmail=you@example.org, or subscribe to the topic", "email subscription")
	} else {
		out("Notifications", "confirm the subscription email sent to "+s.Email, "email subscription")
	}

	nagSuppress(role, []*cdknag.NagPackSuppression{
		{Id: jsii.String("AwsSolutions-IAM5"), Reason: jsii.String("CloudWatch Logs needs the log streams of the function's own log group (LOG_GROUP_ARN:*); SNS publishing to the encrypted topic needs kms:GenerateDataKey* on the topic's one key; sts:AssumeRole names the findings importer role the forwarder stack creates in member accounts, whose ids an organisation does not list at synth time (that role trusts this role only, and may only import that account's findings)."),
			AppliesTo: &[]any{"Resource::<" + logicalID(stack, logs) + ".Arn>:*", "Action::kms:GenerateDataKey*", "Resource::arn:<AWS::Partition>:iam::*:role/" + config.ImporterRolePrefix + "<AWS::Region>"}},
	})
	return stack
}

// canaryRoleName is the drill's canary's role: the detector marks its findings as a drill.
const canaryRoleName = "outsider-canary"

// newCanary is the drill's canary (DESIGN §10): a function whose role denies every action
// (sts:GetCallerIdentity alone ignores policies), invocable only by the drill's principal,
// which hands that principal its credentials to use from outside AWS.
func newCanary(stack awscdk.Stack, principal string) awslambda.Function {
	logs, role := functionRole(stack, "Canary", canaryRoleName, "Outsider drill canary: may do nothing", awscdk.RemovalPolicy_DESTROY)
	role.AddToPolicy(awsiam.NewPolicyStatement(&awsiam.PolicyStatementProps{
		Sid: jsii.String("DenyEverything"), Effect: awsiam.Effect_DENY, Actions: jsii.Strings("*"), Resources: jsii.Strings("*"),
	}))
	nagSuppress(role, []*cdknag.NagPackSuppression{
		{Id: jsii.String("AwsSolutions-IAM5"), Reason: jsii.String("CloudWatch Logs needs the log streams of the function's own log group (LOG_GROUP_ARN:*); the other wildcard is an explicit Deny of every action: the canary's token may do nothing."),
			AppliesTo: &[]any{"Resource::<" + logicalID(stack, logs) + ".Arn>:*", "Action::*", "Resource::*"}},
	})
	fn := awslambda.NewFunction(stack, jsii.String("Canary"), &awslambda.FunctionProps{
		FunctionName:  jsii.String(canaryRoleName), // what outsider drill invokes by default
		Description:   jsii.String("Outsider: the drill's canary (outsider drill): hands its credentials to the drill's principal"),
		Runtime:       awslambda.Runtime_PROVIDED_AL2023(),
		Architecture:  awslambda.Architecture_ARM_64(),
		Handler:       jsii.String("bootstrap"),
		Code:          goFunctionCode("functions/canary"),
		MemorySize:    jsii.Number(128),
		Timeout:       awscdk.Duration_Seconds(jsii.Number(10)),
		Role:          role,
		LogGroup:      logs,
		LoggingFormat: awslambda.LoggingFormat_JSON,
	})
	// Invocable by the drill's principal only (a resource policy: no one else's
	// identity policy can grant it in this account without this, and none names it).
	fn.AddPermission(jsii.String("DrillInvokes"), &awslambda.Permission{
		Principal: awsiam.NewArnPrincipal(jsii.String(principal)), Action: jsii.String("lambda:InvokeFunction"),
	})
	return fn
}

// newDashboard is the detector at a glance: what it reads, what it finds, what fails, how
// far behind it is, what activation withholds and which accounts went quiet.
func newDashboard(stack awscdk.Stack, fn awslambda.Function, queue awssqs.Queue, s Settings) {
	m := func(name, stat string) awscloudwatch.IMetric {
		return awscloudwatch.NewMetric(&awscloudwatch.MetricProps{
			Namespace: jsii.String("Outsider"), MetricName: jsii.String(name), Statistic: jsii.String(stat), Period: awscdk.Duration_Minutes(jsii.Number(5)),
		})
	}
	graph := func(title string, metrics ...awscloudwatch.IMetric) awscloudwatch.IWidget {
		return awscloudwatch.NewGraphWidget(&awscloudwatch.GraphWidgetProps{Title: jsii.String(title), Left: &metrics, Width: jsii.Number(8)})
	}
	five := &awscloudwatch.MetricOptions{Period: awscdk.Duration_Minutes(jsii.Number(5))}
	// Records by account, every account that sent any: a line that drops to nothing is
	// an account gone quiet (its forwarding rule or trail off).
	byAccount := awscloudwatch.NewMathExpression(&awscloudwatch.MathExpressionProps{
		Expression: jsii.String(`SEARCH('{Outsider,Account} MetricName="AccountRecords"', 'Sum', 3600)`),
		Label:      jsii.String(""), Period: awscdk.Duration_Hours(jsii.Number(1)),
	})
	awscloudwatch.NewDashboard(stack, jsii.String("Dashboard"), &awscloudwatch.DashboardProps{
		DashboardName: awscdk.Fn_Sub(jsii.String("Outsider-${AWS::Region}"), nil),
		Widgets: &[]*[]awscloudwatch.IWidget{
			{
				graph("Records read, calls from outside AWS", m("Records", "Sum"), m("Outside", "Sum"), m("LambdaTokensOutside", "Sum")),
				graph("Findings and emails", m("FindingsNew", "Sum"), m("FindingsUpdated", "Sum"), m("Emails", "Sum")),
				graph("Withheld for activation (new accounts' first days)", m("WithheldForActivation", "Sum")),
			},
			{
				graph("Failures", m("FailedMessages", "Sum"), m("Forged", "Sum"), m("Malformed", "Sum"), m("RangesRefused", "Sum"), m("FiledInSecurityAccount", "Sum"), fn.MetricErrors(five)),
				graph("Queue: age of the oldest event (s)", queue.MetricApproximateAgeOfOldestMessage(five)),
				graph(fmt.Sprintf("Accounts silent for %d hours (the refresher's hourly look)", s.SilenceHours), m("SilentAccounts", "Maximum")),
			},
			{
				awscloudwatch.NewGraphWidget(&awscloudwatch.GraphWidgetProps{
					Title: jsii.String("Records by account (hourly)"), Left: &[]awscloudwatch.IMetric{byAccount}, Width: jsii.Number(24),
				}),
			},
		},
	})
}

func logicalID(stack awscdk.Stack, c constructs.IConstruct) string {
	return *stack.GetLogicalId(c.Node().DefaultChild().(awscdk.CfnElement))
}

// functionRole is a function's log group (a year's retention) and its role, which may
// write to that group only (instead of AWSLambdaBasicExecutionRole's "*").
func functionRole(stack awscdk.Stack, id, name, what string, keepLogs awscdk.RemovalPolicy) (awslogs.LogGroup, awsiam.Role) {
	logs := awslogs.NewLogGroup(stack, jsii.String(id+"Logs"), &awslogs.LogGroupProps{
		Retention:     awslogs.RetentionDays_ONE_YEAR,
		RemovalPolicy: keepLogs,
	})
	role := awsiam.NewRole(stack, jsii.String(id+"Role"), &awsiam.RoleProps{
		RoleName:    jsii.String(name),
		AssumedBy:   awsiam.NewServicePrincipal(jsii.String("lambda.amazonaws.com"), nil),
		Description: jsii.String(what),
	})
	allow(role, "WriteOwnLogs", *logs.LogGroupArn()+":*", "logs:CreateLogStream", "logs:PutLogEvents")
	return logs, role
}

// s3ObjectARN is the ARN of one object; the bucket may be a token (the stack's own bucket).
func s3ObjectARN(loc config.S3Location) string {
	return *awscdk.Fn_Join(jsii.String(""), &[]*string{jsii.String("arn:"), awscdk.Aws_PARTITION(), jsii.String(":s3:::" + loc.Bucket + "/" + loc.Key)})
}

// allow grants a role actions on one resource.
func allow(role awsiam.Role, sid, resource string, actions ...string) {
	role.AddToPolicy(awsiam.NewPolicyStatement(&awsiam.PolicyStatementProps{
		Sid: jsii.String(sid), Actions: jsii.Strings(actions...), Resources: jsii.Strings(resource),
	}))
}

func ptr[T any](v T) *T { return &v }

// reserve is a function's reserved concurrency, unless -c reserveConcurrency=false.
func reserve(s Settings, n float64) *float64 {
	if !s.Reserve {
		return nil
	}
	return &n
}

// nagSuppress suppresses findings on one construct and its children (a role and its
// policy), never on a whole stack.
func nagSuppress(c constructs.IConstruct, s []*cdknag.NagPackSuppression) {
	cdknag.NagSuppressions_AddResourceSuppressions(c, &s, jsii.Bool(true))
}

// rangesKey is where the refresher keeps ip-ranges.json in its bucket.
const rangesKey = "ip-ranges.json"

// The topic on which AWS announces changes of its IP ranges (us-east-1 only).
// https://docs.aws.amazon.com/vpc/latest/userguide/subscribe-notifications.html
const ipSpaceChanged = "arn:aws:sns:us-east-1:806199016981:AmazonIpSpaceChanged"

// newRefresher adds the bucket that holds AWS's current ip-ranges.json and the function
// that keeps it current (hourly, and on AWS's change notification) and lists the accounts'
// Lambda functions into the table every hour.
//
// With asnSources it also converts those keyless ASN tables daily into asnDb (by default
// asn.mmdb in its own bucket), and sets s.ASNDB to where the detector finds it.
func newRefresher(stack awscdk.Stack, table awsdynamodb.Table, s *Settings) (awss3.Bucket, awslambda.Function, awssqs.Queue) {
	bucket := awss3.NewBucket(stack, jsii.String("Ranges"), &awss3.BucketProps{
		Encryption:        awss3.BucketEncryption_S3_MANAGED,
		EnforceSSL:        jsii.Bool(true),
		BlockPublicAccess: awss3.BlockPublicAccess_BLOCK_ALL(),
		Versioned:         jsii.Bool(true),
		LifecycleRules: &[]*awss3.LifecycleRule{{
			NoncurrentVersionExpiration: awscdk.Duration_Days(jsii.Number(30)),
		}},
		// Kept by cdk destroy, like the table: a versioned bucket with objects cannot be
		// deleted by CloudFormation (the README says how to remove it).
		RemovalPolicy: awscdk.RemovalPolicy_RETAIN,
	})
	logs, role := functionRole(stack, "Refresher", refresherRoleName, "Outsider refresher of AWS's IP ranges and of the Lambda inventory", awscdk.RemovalPolicy_DESTROY)
	// Only the refresher writes the bucket's objects: a ranges file is what tells the
	// detector what "inside AWS" is.
	bucket.AddToResourcePolicy(awsiam.NewPolicyStatement(&awsiam.PolicyStatementProps{
		Sid:        jsii.String("OnlyTheRefresherWrites"),
		Effect:     awsiam.Effect_DENY,
		Principals: &[]awsiam.IPrincipal{awsiam.NewAnyPrincipal()},
		Actions:    jsii.Strings("s3:PutObject", "s3:DeleteObject", "s3:DeleteObjectVersion", "s3:RestoreObject", "s3:ReplicateObject"),
		Resources:  jsii.Strings(*bucket.ArnForObjects(jsii.String("*"))),
		Conditions: &map[string]any{"ArnNotEquals": map[string]any{"aws:PrincipalArn": *role.RoleArn()}},
	}))
	if s.Inventory {
		// The inventory (-c inventory=true): this account's functions directly, member
		// accounts' through the read-only role the forwarder stack creates there
		// (trusting this role only). ListFunctions returns every function's environment
		// variables: this role can read them wherever it lists.
		allow(role, "ListOwnFunctions", "*", "lambda:ListFunctions") // ListFunctions takes no resource
		assume := awsiam.NewPolicyStatement(&awsiam.PolicyStatementProps{
			Sid: jsii.String("ReadMemberInventories"), Actions: jsii.Strings("sts:AssumeRole"),
			Resources: jsii.Strings(*awscdk.Fn_Sub(jsii.String("arn:${AWS::Partition}:iam::*:role/"+inventoryRolePrefix+"*"), nil)),
		})
		if s.OrganizationID != "" {
			// Only roles of the organisation: not a role of that name in anyone's account.
			// https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_condition-keys.html#condition-keys-resourceorgid
			assume.AddCondition(jsii.String("StringEquals"), map[string]any{"aws:ResourceOrgID": s.OrganizationID})
		}
		role.AddToPolicy(assume)
		// Its own keys of the table only: the inventories.
		// https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/specifying-conditions.html
		role.AddToPolicy(awsiam.NewPolicyStatement(&awsiam.PolicyStatementProps{
			Sid: jsii.String("KeepInventory"), Actions: jsii.Strings("dynamodb:PutItem", "dynamodb:BatchWriteItem"), Resources: jsii.Strings(*table.TableArn()),
			Conditions: &map[string]any{"ForAllValues:StringLike": map[string]any{"dynamodb:LeadingKeys": []any{detect.InventoryKey("*")}}},
		}))
	}
	// The one object it keeps (HeadObject needs s3:GetObject).
	allow(role, "RangesObject", *bucket.ArnForObjects(jsii.String(rangesKey)), "s3:GetObject", "s3:PutObject")
	env := map[string]*string{
		config.EnvRangesBucket:    bucket.BucketName(),
		config.EnvRangesKey:       jsii.String(rangesKey),
		config.EnvTable:           table.TableName(),
		config.EnvSecurityAccount: stack.Account(),
	}
	if s.SilenceHours > 0 {
		// The accounts heard from, learned from their records: the refresher reads the
		// register hourly and reports the silent ones (SilentAccountsAlarm). Its one key.
		env[config.EnvSilenceHours] = jsii.String(fmt.Sprint(s.SilenceHours))
		role.AddToPolicy(awsiam.NewPolicyStatement(&awsiam.PolicyStatementProps{
			Sid: jsii.String("ReadAccountsHeard"), Actions: jsii.Strings("dynamodb:GetItem"), Resources: jsii.Strings(*table.TableArn()),
			Conditions: &map[string]any{"ForAllValues:StringEquals": map[string]any{"dynamodb:LeadingKeys": []any{silence.Key}}},
		}))
	}
	if s.Inventory {
		env[config.EnvInventoryAccounts] = jsii.String(strings.Join(append([]string{*stack.Account()}, s.InventoryAccounts...), ","))
		env[config.EnvInventoryRegions] = jsii.String(orDefault(s.InventoryRegions, *stack.Region()))
	}
	if s.ASNSources != "" {
		if s.ASNDB == "" {
			s.ASNDB = "s3://" + *bucket.BucketName() + "/asn.mmdb"
		}
		loc, _ := config.ParseS3(s.ASNDB)
		env[config.EnvASNSources], env[config.EnvASNDB] = jsii.String(s.ASNSources), jsii.String(s.ASNDB)
		allow(role, "WriteASNDatabase", s3ObjectARN(loc), "s3:GetObject", "s3:PutObject")
	}
	// Its invocations are asynchronous (the schedule, the SNS notice): what fails after
	// Lambda's retries lands here, and an alarm says so.
	dlq := awssqs.NewQueue(stack, jsii.String("RefresherDeadLetters"), &awssqs.QueueProps{
		Encryption: awssqs.QueueEncryption_SQS_MANAGED, EnforceSSL: jsii.Bool(true), RetentionPeriod: awscdk.Duration_Days(jsii.Number(14)),
	})
	fn := awslambda.NewFunction(stack, jsii.String("Refresher"), &awslambda.FunctionProps{
		DeadLetterQueue: dlq,
		Description:     jsii.String("Outsider: keeps AWS's ip-ranges.json current for the detector"),
		Runtime:         awslambda.Runtime_PROVIDED_AL2023(),
		Architecture:    awslambda.Architecture_ARM_64(),
		Handler:         jsii.String("bootstrap"),
		Code:            goFunctionCode("functions/refresher"),
		MemorySize:      jsii.Number(256),
		Timeout:         awscdk.Duration_Seconds(jsii.Number(60)),
		Role:            role,
		LogGroup:        logs,
		LoggingFormat:   awslambda.LoggingFormat_JSON,
		Environment:     &env,
		// One at a time: the hourly schedule and AWS's notices never need more.
		ReservedConcurrentExecutions: reserve(*s, 1),
	})
	awsevents.NewRule(stack, jsii.String("RefreshHourly"), &awsevents.RuleProps{
		Description: jsii.String("Outsider: check AWS's IP ranges every hour (notifications can be missed)"),
		Schedule:    awsevents.Schedule_Rate(awscdk.Duration_Hours(jsii.Number(1))),
		Targets:     &[]awsevents.IRuleTarget{awseventstargets.NewLambdaFunction(fn, nil)},
	})
	// The notification topic is in us-east-1: the subscription says so, whatever region
	// this stack is in. It exists in the commercial partition only: elsewhere (aws-cn,
	// aws-us-gov) the hourly schedule alone keeps the ranges current.
	commercial := awscdk.NewCfnCondition(stack, jsii.String("InCommercialPartition"), &awscdk.CfnConditionProps{
		Expression: awscdk.Fn_ConditionEquals(awscdk.Aws_PARTITION(), jsii.String("aws")),
	})
	sub := awssns.NewCfnSubscription(stack, jsii.String("IpSpaceChanged"), &awssns.CfnSubscriptionProps{
		TopicArn: jsii.String(ipSpaceChanged), Protocol: jsii.String("lambda"), Endpoint: fn.FunctionArn(), Region: jsii.String("us-east-1"),
	})
	sub.CfnOptions().SetCondition(commercial)
	perm := awslambda.NewCfnPermission(stack, jsii.String("IpSpaceChangedInvokes"), &awslambda.CfnPermissionProps{
		Action: jsii.String("lambda:InvokeFunction"), FunctionName: fn.FunctionArn(),
		Principal: jsii.String("sns.amazonaws.com"), SourceArn: jsii.String(ipSpaceChanged),
	})
	perm.CfnOptions().SetCondition(commercial)
	nagSuppress(role, []*cdknag.NagPackSuppression{
		{Id: jsii.String("AwsSolutions-IAM5"), Reason: jsii.String("CloudWatch Logs needs the log streams of the function's own log group (LOG_GROUP_ARN:*); lambda:ListFunctions supports no resource-level permission; sts:AssumeRole names the read-only inventory role the forwarder stack creates in each region of member accounts, whose ids an organisation does not list at synth time (that role trusts this role only)."),
			AppliesTo: &[]any{"Resource::<" + logicalID(stack, logs) + ".Arn>:*", "Resource::*", "Resource::arn:<AWS::Partition>:iam::*:role/" + inventoryRolePrefix + "*"}},
	})
	nagSuppress(bucket, []*cdknag.NagPackSuppression{
		{Id: jsii.String("AwsSolutions-S1"), Reason: jsii.String("The bucket holds AWS's public ip-ranges.json (and an ASN database) written by the refresher only (its bucket policy denies every other writer); server access logs would need a second bucket to record reads by the detector's role. Its versions keep 30 days of changes.")},
	})
	return bucket, fn, dlq
}
