package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/aws/aws-cdk-go/awscdk/v2"
	"github.com/aws/aws-cdk-go/awscdk/v2/assertions"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/eventbridge"
	ebtypes "github.com/aws/aws-sdk-go-v2/service/eventbridge/types"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/aws/jsii-runtime-go"
	"github.com/google/go-cmp/cmp"

	"github.com/outsider-sec/outsider/internal/mototest"
	"github.com/outsider-sec/outsider/pkg/asff"
	"github.com/outsider-sec/outsider/pkg/config"
	"github.com/outsider-sec/outsider/pkg/silence"
)

func TestMain(m *testing.M) {
	os.Setenv("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")
	code := mototest.Main(m)
	jsii.Close()
	os.Exit(code)
}

// synth builds both stacks with the given context, without bundling the function (the
// bundling itself is exercised by `cdk synth` in CI).
func synth(t *testing.T, ctx map[string]string) (detector, forwarder map[string]any, app awscdk.App) {
	t.Helper()
	c := map[string]any{"aws:cdk:bundling-stacks": []any{}}
	for k, v := range ctx {
		c[k] = v
	}
	noPanic(t, func() {
		app = awscdk.NewApp(&awscdk.AppProps{Context: &c})
		if err := build(app); err != nil {
			t.Fatal(err)
		}
		for _, st := range []struct {
			name string
			dst  *map[string]any
		}{{"OutsiderDetector", &detector}, {"OutsiderForwarder", &forwarder}} {
			stack := app.Node().FindChild(jsii.String(st.name)).(awscdk.Stack)
			tpl := assertions.Template_FromStack(stack, nil)
			*st.dst = *tpl.ToJSON()
		}
	})
	return detector, forwarder, app
}

// noPanic turns a jsii assertion failure (a Go panic) into a test failure.
func noPanic(t *testing.T, f func()) {
	t.Helper()
	defer func() {
		if r := recover(); r != nil {
			t.Fatalf("CDK: %v", r)
		}
	}()
	f()
}

// resources returns the resources of a type, by logical id.
func resources(tpl map[string]any, typ string) map[string]map[string]any {
	out := map[string]map[string]any{}
	for id, r := range tpl["Resources"].(map[string]any) {
		r := r.(map[string]any)
		if r["Type"] == typ {
			props, _ := r["Properties"].(map[string]any)
			out[id] = props
		}
	}
	return out
}

func one(t *testing.T, tpl map[string]any, typ string) map[string]any {
	t.Helper()
	rs := resources(tpl, typ)
	if len(rs) != 1 {
		t.Fatalf("%d %s, want 1", len(rs), typ)
	}
	for _, p := range rs {
		return p
	}
	return nil
}

// where returns the one resource of a type whose property key contains value.
func where(t *testing.T, tpl map[string]any, typ, key, value string) map[string]any {
	t.Helper()
	var found []map[string]any
	for _, p := range resources(tpl, typ) {
		if strings.Contains(fmt.Sprint(p[key]), value) {
			found = append(found, p)
		}
	}
	if len(found) != 1 {
		t.Fatalf("%d %s with %s containing %q, want 1", len(found), typ, key, value)
	}
	return found[0]
}

// sid returns the statement of a policy with that Sid, or nil.
func sid(policy map[string]any, id string) map[string]any {
	for _, st := range get(policy, "PolicyDocument", "Statement").([]any) {
		if st := st.(map[string]any); st["Sid"] == id {
			return st
		}
	}
	return nil
}

// statements renders a policy's statements as "ACTIONS on RESOURCE".
func statements(policy map[string]any) []string {
	var out []string
	for _, st := range get(policy, "PolicyDocument", "Statement").([]any) {
		out = append(out, fmt.Sprint(st.(map[string]any)["Action"])+" on "+fmt.Sprint(st.(map[string]any)["Resource"]))
	}
	return out
}

func get(v any, path ...any) any {
	for _, p := range path {
		switch k := p.(type) {
		case string:
			m, _ := v.(map[string]any)
			v = m[k]
		case int:
			a, _ := v.([]any)
			if k >= len(a) {
				return nil
			}
			v = a[k]
		}
	}
	return v
}

func TestDetectorStack(t *testing.T) {
	tpl, _, _ := synth(t, map[string]string{"notificationEmail": "secops@example.org", "organizationId": "o-abcdef1234", "trustedCidrs": "203.0.113.0/24"})

	fn := where(t, tpl, "AWS::Lambda::Function", "Description", "Lambda credentials")
	for k, want := range map[string]any{"Runtime": "provided.al2023", "Handler": "bootstrap", "MemorySize": 512.0, "Timeout": 120.0} {
		if fn[k] != want {
			t.Errorf("function %s = %v, want %v", k, fn[k], want)
		}
	}
	if !cmp.Equal(fn["Architectures"], []any{"arm64"}) || get(fn, "LoggingConfig", "LogFormat") != "JSON" {
		t.Errorf("function: %v, %v", fn["Architectures"], fn["LoggingConfig"])
	}
	env := get(fn, "Environment", "Variables").(map[string]any)
	for _, name := range []string{config.EnvTable, config.EnvTopicARN, config.EnvSecurityAccount, config.EnvActivation, config.EnvTraining, config.EnvDedup, config.EnvTrustedCIDRs, config.EnvIPRanges} {
		if _, ok := env[name]; !ok {
			t.Errorf("function lacks %s", name)
		}
	}
	if env[config.EnvTrustedCIDRs] != "203.0.113.0/24" {
		t.Errorf("%s = %v", config.EnvTrustedCIDRs, env[config.EnvTrustedCIDRs])
	}

	esm := one(t, tpl, "AWS::Lambda::EventSourceMapping")
	if esm["BatchSize"] != 500.0 || esm["MaximumBatchingWindowInSeconds"] != 20.0 || !cmp.Equal(esm["FunctionResponseTypes"], []any{"ReportBatchItemFailures"}) {
		t.Errorf("event source mapping %v", esm)
	}

	if esm["ScalingConfig"] == nil || get(esm, "ScalingConfig", "MaximumConcurrency") != 10.0 {
		t.Errorf("no concurrency limit on the queue's consumption: %v", esm["ScalingConfig"])
	}

	queues := resources(tpl, "AWS::SQS::Queue")
	if len(queues) != 3 {
		t.Fatalf("%d queues, want 3 (events, their dead letters, the refresher's dead letters)", len(queues))
	}
	redrives := 0
	for id, q := range queues {
		if q["SqsManagedSseEnabled"] != true {
			t.Errorf("queue %s not encrypted", id)
		}
		if get(q, "RedrivePolicy", "maxReceiveCount") == 5.0 {
			redrives++
		}
	}
	if redrives != 1 {
		t.Errorf("%d queues with a redrive policy to the DLQ, want 1", redrives)
	}
	for id, p := range resources(tpl, "AWS::SQS::QueuePolicy") {
		if !strings.Contains(fmt.Sprint(p), "aws:SecureTransport") {
			t.Errorf("queue policy %s does not enforce TLS", id)
		}
	}
	// Only the two rules may write the events queue: a deny for every other principal.
	var deny map[string]any
	for _, st := range get(where(t, tpl, "AWS::SQS::QueuePolicy", "PolicyDocument", "OnlyTheRulesSend"), "PolicyDocument", "Statement").([]any) {
		if st := st.(map[string]any); st["Sid"] == "OnlyTheRulesSend" {
			deny = st
		}
	}
	senders, _ := get(deny, "Condition", "ArnNotEquals", "aws:SourceArn").([]any)
	if deny["Effect"] != "Deny" || fmt.Sprint(deny["Principal"]) != "map[AWS:*]" || deny["Action"] != "sqs:SendMessage" ||
		len(senders) != 2 || !strings.Contains(fmt.Sprint(senders), "FromOrganization") || !strings.Contains(fmt.Sprint(senders), "FromThisAccount") {
		t.Errorf("events queue: SendMessage not denied to all but the two rules: %v", deny)
	}
	for id, q := range queues {
		if q["MessageRetentionPeriod"] != 1209600.0 {
			t.Errorf("queue %s keeps messages %v s, want 14 days", id, q["MessageRetentionPeriod"])
		}
	}
	if fn["ReservedConcurrentExecutions"] != 10.0 {
		t.Errorf("detector reserved concurrency %v, want maxConcurrency", fn["ReservedConcurrentExecutions"])
	}
	if kp := fmt.Sprint(one(t, tpl, "AWS::KMS::Key")["KeyPolicy"]); !strings.Contains(kp, "aws:SourceArn") {
		t.Errorf("CloudWatch may use the topic's key for any alarm of any account: %s", kp)
	}
	if bp := fmt.Sprint(one(t, tpl, "AWS::S3::BucketPolicy")); !strings.Contains(bp, "s3:ReplicateObject") {
		t.Errorf("the ranges bucket lets others replicate objects into it: %s", bp)
	}

	table := one(t, tpl, "AWS::DynamoDB::Table")
	if table["BillingMode"] != "PAY_PER_REQUEST" || get(table, "TimeToLiveSpecification", "AttributeName") != "exp" ||
		get(table, "PointInTimeRecoverySpecification", "PointInTimeRecoveryEnabled") != true || get(table, "SSESpecification", "SSEEnabled") != true {
		t.Errorf("table %v", table)
	}
	if !cmp.Equal(table["KeySchema"], []any{map[string]any{"AttributeName": "pk", "KeyType": "HASH"}}) {
		t.Errorf("key schema %v", table["KeySchema"])
	}

	// Findings and alarms on topics of their own, both encrypted, both subscribed.
	topics := resources(tpl, "AWS::SNS::Topic")
	if len(topics) != 2 {
		t.Fatalf("%d topics, want findings and alarms", len(topics))
	}
	for id, topic := range topics {
		if topic["KmsMasterKeyId"] == nil {
			t.Errorf("topic %s not encrypted", id)
		}
	}
	subs := resources(tpl, "AWS::SNS::Subscription")
	emails := 0
	for _, sub := range subs {
		if sub["Protocol"] == "email" {
			emails++
			if sub["Endpoint"] != "secops@example.org" {
				t.Errorf("subscription %v", sub)
			}
		}
	}
	if emails != 2 {
		t.Errorf("%d email subscriptions, want 2 (findings, alarms)", emails)
	}
	if env := fmt.Sprint(get(where(t, tpl, "AWS::Lambda::Function", "Environment", config.EnvTopicARN), "Environment")); !strings.Contains(env, config.EnvEmailSeverity+":LOW") {
		t.Errorf("INFORMATIONAL findings emailed by default: %s", env)
	}
	key := one(t, tpl, "AWS::KMS::Key")
	if key["EnableKeyRotation"] != true {
		t.Error("key rotation off")
	}
	if ks := fmt.Sprint(get(key, "KeyPolicy")); !strings.Contains(ks, "cloudwatch.amazonaws.com") || !strings.Contains(ks, "aws:SourceAccount") {
		t.Errorf("the key's grant to CloudWatch is not limited to this account: %s", ks)
	}
	// Alarms reach a person: CloudWatch may publish to the topic, for this account's alarms.
	tp := fmt.Sprint(where(t, tpl, "AWS::SNS::TopicPolicy", "PolicyDocument", "CloudWatchAlarmsPublish"))
	if !strings.Contains(tp, "Alarms") || strings.Contains(tp, "Findings") {
		t.Errorf("CloudWatch may publish to a topic other than the alarms': %s", tp)
	}
	if !strings.Contains(tp, "cloudwatch.amazonaws.com") || !strings.Contains(tp, "aws:SourceAccount") || !strings.Contains(tp, "sns:Publish") {
		t.Errorf("topic policy lets no CloudWatch alarm publish: %s", tp)
	}

	alarms := resources(tpl, "AWS::CloudWatch::Alarm")
	var metrics []string
	for id, a := range alarms {
		if a["MetricName"] == "AccountRecords" {
			// The security account's silence: missing data breaches, after 6 hours.
			if !strings.HasPrefix(id, "SilenceSecurityAccount") || a["TreatMissingData"] != "breaching" || a["EvaluationPeriods"] != 6.0 || a["Period"] != 3600.0 {
				t.Errorf("silence alarm %s: %v", id, a)
			}
			continue
		}
		metrics = append(metrics, a["MetricName"].(string))
		if len(a["AlarmActions"].([]any)) != 1 {
			t.Errorf("alarm %v has no action", a["MetricName"])
		}
	}
	slices.Sort(metrics)
	want := []string{"ApproximateAgeOfOldestMessage", "ApproximateNumberOfMessagesVisible", "ApproximateNumberOfMessagesVisible", "Errors", "Errors", "FailedMessages", "Forged", "RangesRefused", "SilentAccounts", "Throttles"}
	if !cmp.Equal(metrics, want) {
		t.Errorf("alarms on %v, want %v", metrics, want)
	}
	// The dashboard: records, calls from outside, findings, failures, queue age, what
	// activation withholds, per-account silence.
	body := fmt.Sprint(one(t, tpl, "AWS::CloudWatch::Dashboard")["DashboardBody"])
	for _, w := range []string{"Records", "LambdaTokensOutside", "FindingsNew", "FailedMessages", "ApproximateAgeOfOldestMessage", "WithheldForActivation", "AccountRecords", "SilentAccounts"} {
		if !strings.Contains(body, w) {
			t.Errorf("the dashboard does not show %s", w)
		}
	}
	// Every account heard from: the refresher reads the register (its one key) and
	// reports the silent ones hourly.
	refresherFn := where(t, tpl, "AWS::Lambda::Function", "Description", "ip-ranges")
	if env := fmt.Sprint(get(refresherFn, "Environment")); !strings.Contains(env, config.EnvSilenceHours+":6") {
		t.Errorf("the refresher does not report silent accounts: %s", env)
	}
	if p := fmt.Sprint(sid(where(t, tpl, "AWS::IAM::Policy", "PolicyDocument", "ReadAccountsHeard"), "ReadAccountsHeard")); !strings.Contains(p, "dynamodb:GetItem") || !strings.Contains(p, silence.Key) || strings.Contains(p, "PutItem") {
		t.Errorf("the refresher's read of the register: %s", p)
	}
	for id, lg := range resources(tpl, "AWS::Logs::LogGroup") {
		if lg["RetentionInDays"] != 365.0 {
			t.Errorf("log group %s retention %v", id, lg["RetentionInDays"])
		}
	}

	// The refresher: its bucket, its function, hourly and on AWS's notification.
	bucket := one(t, tpl, "AWS::S3::Bucket")
	if get(bucket, "VersioningConfiguration", "Status") != "Enabled" || get(bucket, "PublicAccessBlockConfiguration", "RestrictPublicBuckets") != true ||
		get(bucket, "BucketEncryption", "ServerSideEncryptionConfiguration", 0, "ServerSideEncryptionByDefault", "SSEAlgorithm") != "AES256" {
		t.Errorf("ranges bucket %v", bucket)
	}
	for id, b := range tpl["Resources"].(map[string]any) {
		if b.(map[string]any)["Type"] == "AWS::S3::Bucket" && b.(map[string]any)["DeletionPolicy"] != "Retain" {
			t.Errorf("bucket %s is deleted by cdk destroy, which fails on a versioned bucket with objects", id)
		}
	}
	bp := fmt.Sprint(one(t, tpl, "AWS::S3::BucketPolicy"))
	if !strings.Contains(bp, "Deny") || !strings.Contains(bp, "s3:PutObject") || !strings.Contains(bp, "aws:PrincipalArn") || !strings.Contains(bp, "RefresherRole") {
		t.Errorf("bucket policy does not keep other writers out: %s", bp)
	}
	refresher := where(t, tpl, "AWS::Lambda::Function", "Description", "ip-ranges.json")
	if get(refresher, "Environment", "Variables", config.EnvRangesKey) != "ip-ranges.json" || !cmp.Equal(refresher["Architectures"], []any{"arm64"}) {
		t.Errorf("refresher %v", refresher)
	}
	if get(refresher, "DeadLetterConfig", "TargetArn") == nil {
		t.Errorf("refresher has no dead-letter queue: %v", refresher["DeadLetterConfig"])
	}
	ipSub := where(t, tpl, "AWS::SNS::Subscription", "Protocol", "lambda")
	if ipSub["TopicArn"] != ipSpaceChanged || ipSub["Region"] != "us-east-1" {
		t.Errorf("ip-space subscription %v", ipSub)
	}
	if sched := where(t, tpl, "AWS::Events::Rule", "ScheduleExpression", "rate"); sched["ScheduleExpression"] != "rate(1 hour)" {
		t.Errorf("refresh schedule %v", sched["ScheduleExpression"])
	}
	perm := where(t, tpl, "AWS::Lambda::Permission", "Principal", "sns.amazonaws.com")
	if perm["SourceArn"] != ipSpaceChanged {
		t.Errorf("sns invoke permission %v", perm)
	}

	bus := one(t, tpl, "AWS::Events::EventBus")
	if bus["Name"] != busName {
		t.Errorf("bus %v", bus["Name"])
	}
	pol := fmt.Sprint(one(t, tpl, "AWS::Events::EventBusPolicy"))
	if !strings.Contains(pol, "aws:PrincipalOrgID") || !strings.Contains(pol, "o-abcdef1234") || !strings.Contains(pol, "events:PutEvents") {
		t.Errorf("bus policy %s", pol)
	}

	rules := resources(tpl, "AWS::Events::Rule")
	for id, r := range rules {
		if r["ScheduleExpression"] != nil {
			delete(rules, id) // the refresher's schedule
		}
	}
	if len(rules) != 2 {
		t.Fatalf("%d rules, want 2 (organisation bus, this account's default bus)", len(rules))
	}
	for id, r := range rules {
		if r["State"] != ruleState {
			t.Errorf("rule %s state %v", id, r["State"])
		}
		if !cmp.Equal(r["EventPattern"], normalise(eventPattern())) {
			t.Errorf("rule %s pattern %v", id, r["EventPattern"])
		}
	}

	outputs := tpl["Outputs"].(map[string]any)
	for _, o := range []string{"EventBusArn", "StateTable", "FindingsTopic", "DeadLetterQueue", "Notifications"} {
		if _, ok := outputs[o]; !ok {
			t.Errorf("no output %s", o)
		}
	}
}

func normalise(v any) any {
	b, _ := json.Marshal(v)
	var out any
	json.Unmarshal(b, &out)
	return out
}

// TestDetectorPolicies checks the function's permissions statement by statement.
func TestDetectorPolicies(t *testing.T) {
	tpl, _, _ := synth(t, map[string]string{"asnDb": "s3://geo-bucket/asn/GeoLite2-ASN.mmdb"})
	role := where(t, tpl, "AWS::IAM::Role", "RoleName", detectorRoleName)
	if get(role, "RoleName") != detectorRoleName || get(role, "AssumeRolePolicyDocument", "Statement", 0, "Principal", "Service") != "lambda.amazonaws.com" {
		t.Errorf("role %v", role)
	}
	if role["ManagedPolicyArns"] != nil {
		t.Errorf("managed policies %v", role["ManagedPolicyArns"])
	}
	stmts := get(where(t, tpl, "AWS::IAM::Policy", "Roles", "DetectorRole"), "PolicyDocument", "Statement").([]any)
	type stmt struct{ Actions, Resource string }
	var got []stmt
	for _, s := range stmts {
		s := s.(map[string]any)
		if s["Effect"] != "Allow" {
			t.Errorf("statement %v is not an Allow", s)
		}
		got = append(got, stmt{fmt.Sprint(s["Action"]), fmt.Sprint(s["Resource"])})
	}
	want := []stmt{
		{"[logs:CreateLogStream logs:PutLogEvents]", "map[Fn::Join:[ [map[Fn::GetAtt:[DetectorLogs43D813CF Arn]] :*]]]"},
		{"[dynamodb:GetItem dynamodb:PutItem dynamodb:BatchWriteItem]", "map[Fn::GetAtt:[State1C20CC9A Arn]]"},
		{"securityhub:BatchImportFindings", "map[Fn::Sub:arn:${AWS::Partition}:securityhub:${AWS::Region}:${AWS::AccountId}:product/${AWS::AccountId}/default]"},
		// The findings of a member account, in its own Security Hub.
		{"sts:AssumeRole", "map[Fn::Sub:arn:${AWS::Partition}:iam::*:role/" + config.ImporterRolePrefix + "${AWS::Region}]"},
		{"sns:Publish", "map[Ref:Findings172CF60E]"},
		{"[kms:Decrypt kms:GenerateDataKey*]", "map[Fn::GetAtt:[TopicKeyB2E0C9CB Arn]]"},
		{"s3:GetObject", "map[Fn::Join:[ [arn: map[Ref:AWS::Partition] :s3:::geo-bucket/asn/GeoLite2-ASN.mmdb]]]"},
		{"s3:GetObject", "map[Fn::Join:[ [map[Fn::GetAtt:[RangesC3879531 Arn]] /ip-ranges.json]]]"},
		{"[sqs:ReceiveMessage sqs:ChangeMessageVisibility sqs:GetQueueUrl sqs:DeleteMessage sqs:GetQueueAttributes]", "map[Fn::GetAtt:[EventsD32975C2 Arn]]"},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("detector policy (-want +got):\n%s", diff)
	}
	// No statement grants "*" on anything.
	for _, s := range got {
		if s.Resource == "*" {
			t.Errorf("a statement on every resource: %v", s)
		}
	}
}

// TestKeylessASN: with asnSources, the refresher converts them into its bucket and the
// detector reads that one object.
func TestKeylessASN(t *testing.T) {
	tpl, _, _ := synth(t, map[string]string{"asnSources": "https://example.org/asn-ipv4.csv.gz,https://example.org/asn-ipv6.csv.gz"})
	refresher := where(t, tpl, "AWS::Lambda::Function", "Description", "ip-ranges.json")
	detector := where(t, tpl, "AWS::Lambda::Function", "Description", "Lambda credentials")
	if get(refresher, "Environment", "Variables", config.EnvASNSources) == nil || get(detector, "Environment", "Variables", config.EnvASNDB) == nil {
		t.Fatalf("env: refresher %v, detector %v", get(refresher, "Environment"), get(detector, "Environment"))
	}
	rp := fmt.Sprint(get(where(t, tpl, "AWS::IAM::Policy", "Roles", "RefresherRole"), "PolicyDocument"))
	dp := fmt.Sprint(get(where(t, tpl, "AWS::IAM::Policy", "Roles", "DetectorRole"), "PolicyDocument"))
	if !strings.Contains(rp, "WriteASNDatabase") || !strings.Contains(rp, "/asn.mmdb") || !strings.Contains(dp, "ReadASNDatabase") || !strings.Contains(dp, "/asn.mmdb") {
		t.Errorf("policies:\nrefresher %s\ndetector %s", rp, dp)
	}
}

func TestRefresherPolicy(t *testing.T) {
	// Off by default: the refresher lists nothing and may assume nothing.
	tpl, _, _ := synth(t, nil)
	got := statements(where(t, tpl, "AWS::IAM::Policy", "Roles", "RefresherRole"))
	want := []string{
		"[logs:CreateLogStream logs:PutLogEvents] on map[Fn::Join:[ [map[Fn::GetAtt:[RefresherLogsD21FC01C Arn]] :*]]]",
		"[s3:GetObject s3:PutObject] on map[Fn::Join:[ [map[Fn::GetAtt:[RangesC3879531 Arn]] /ip-ranges.json]]]",
		"dynamodb:GetItem on map[Fn::GetAtt:[State1C20CC9A Arn]]", // the register of accounts heard from
		"sqs:SendMessage on map[Fn::GetAtt:[RefresherDeadLettersFC354EAE Arn]]",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("refresher policy, no inventory (-want +got):\n%s", diff)
	}
	if env := fmt.Sprint(get(where(t, tpl, "AWS::Lambda::Function", "Description", "ip-ranges"), "Environment")); strings.Contains(env, config.EnvInventoryAccounts) {
		t.Errorf("inventory accounts set with the inventory off: %s", env)
	}

	tpl, _, _ = synth(t, map[string]string{"inventory": "true", "organizationId": "o-abcdef1234", "memberAccounts": "111122223333,444455556666", "silenceHours": "3"})
	for _, a := range []string{"111122223333", "444455556666"} {
		var al map[string]any
		for id, r := range resources(tpl, "AWS::CloudWatch::Alarm") {
			if strings.HasPrefix(id, "Silence"+a) {
				al = r
			}
		}
		if al == nil || !strings.Contains(fmt.Sprint(al["Dimensions"]), a) || al["EvaluationPeriods"] != 3.0 {
			t.Errorf("no silence alarm for member account %s: %v", a, al)
		}
	}
	got = statements(where(t, tpl, "AWS::IAM::Policy", "Roles", "RefresherRole"))
	want = []string{
		"[logs:CreateLogStream logs:PutLogEvents] on map[Fn::Join:[ [map[Fn::GetAtt:[RefresherLogsD21FC01C Arn]] :*]]]",
		"lambda:ListFunctions on *",
		"sts:AssumeRole on map[Fn::Sub:arn:${AWS::Partition}:iam::*:role/outsider-inventory-reader-*]",
		"[dynamodb:PutItem dynamodb:BatchWriteItem] on map[Fn::GetAtt:[State1C20CC9A Arn]]",
		"[s3:GetObject s3:PutObject] on map[Fn::Join:[ [map[Fn::GetAtt:[RangesC3879531 Arn]] /ip-ranges.json]]]",
		"dynamodb:GetItem on map[Fn::GetAtt:[State1C20CC9A Arn]]", // the register of accounts heard from
		"sqs:SendMessage on map[Fn::GetAtt:[RefresherDeadLettersFC354EAE Arn]]",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("refresher policy (-want +got):\n%s", diff)
	}
	// AWS's change notifications come from a topic of the commercial partition: the
	// subscription and its permission exist only there.
	for _, typ := range []string{"AWS::SNS::Subscription", "AWS::Lambda::Permission"} {
		n := 0
		for id, r := range tpl["Resources"].(map[string]any) {
			r := r.(map[string]any)
			if r["Type"] == typ && strings.Contains(fmt.Sprint(r["Properties"]), "AmazonIpSpaceChanged") {
				n++
				if r["Condition"] != "InCommercialPartition" {
					t.Errorf("%s %s is not conditional on the commercial partition: %v", typ, id, r["Condition"])
				}
			}
		}
		if n != 1 {
			t.Errorf("%d %s for AmazonIpSpaceChanged, want 1", n, typ)
		}
	}
	if c := fmt.Sprint(get(tpl, "Conditions", "InCommercialPartition")); !strings.Contains(c, "AWS::Partition") {
		t.Errorf("InCommercialPartition: %s", c)
	}
	// It may write its own keys of the table only: the inventories.
	if p := fmt.Sprint(get(where(t, tpl, "AWS::IAM::Policy", "Roles", "RefresherRole"), "PolicyDocument")); !strings.Contains(p, "dynamodb:LeadingKeys") || !strings.Contains(p, "inv#*") {
		t.Errorf("the refresher may write any key of the table: %s", p)
	}
	// It may assume the inventory role's name only in the organisation's accounts.
	if p := fmt.Sprint(get(where(t, tpl, "AWS::IAM::Policy", "Roles", "RefresherRole"), "PolicyDocument")); !strings.Contains(p, "aws:ResourceOrgID:o-abcdef1234") {
		t.Errorf("the refresher may assume the inventory role in any account: %s", p)
	}
	if fn := where(t, tpl, "AWS::Lambda::Function", "Description", "ip-ranges"); fn["ReservedConcurrentExecutions"] != 1.0 {
		t.Errorf("refresher reserved concurrency %v, want 1", fn["ReservedConcurrentExecutions"])
	}
}

func TestForwarderStack(t *testing.T) {
	_, tpl, _ := synth(t, nil)
	params := tpl["Parameters"].(map[string]any)
	for _, p := range []string{"CentralEventBusArn", "SecurityAccountId"} {
		if _, ok := params[p]; !ok {
			t.Errorf("no parameter %s", p)
		}
	}
	if get(params, "Inventory", "Default") != "false" {
		t.Errorf("the inventory role is not off by default: %v", params["Inventory"])
	}
	for _, typ := range []string{"AWS::IAM::Role", "AWS::IAM::Policy"} {
		for id, r := range tpl["Resources"].(map[string]any) {
			r := r.(map[string]any)
			if r["Type"] == typ && strings.Contains(id, "InventoryRole") && r["Condition"] != "InventoryOn" {
				t.Errorf("%s %s exists whatever the Inventory parameter says", typ, id)
			}
		}
	}
	// EventBridge may use the forward role only for this account's rules.
	if fwd := fmt.Sprint(where(t, tpl, "AWS::IAM::Role", "AssumeRolePolicyDocument", "events.amazonaws.com")["AssumeRolePolicyDocument"]); !strings.Contains(fwd, "aws:SourceAccount") {
		t.Errorf("forward role trust has no aws:SourceAccount: %s", fwd)
	}
	if _, ok := params["BootstrapVersion"]; ok {
		t.Error("the forwarder needs a CDK bootstrap: a StackSet cannot deploy it")
	}
	rule := one(t, tpl, "AWS::Events::Rule")
	if rule["State"] != ruleState || !cmp.Equal(rule["EventPattern"], normalise(eventPattern())) {
		t.Errorf("forward rule %v", rule)
	}
	if get(rule, "Targets", 0, "Arn", "Ref") != "CentralEventBusArn" || get(rule, "Targets", 0, "RoleArn") == nil {
		t.Errorf("forward target %v", rule["Targets"])
	}
	roles := resources(tpl, "AWS::IAM::Role")
	policies := resources(tpl, "AWS::IAM::Policy")
	var inventory map[string]any
	for _, r := range roles {
		// One role per region: a StackSet deploys the stack to every region of an account.
		if fmt.Sprint(r["RoleName"]) == "map[Fn::Sub:"+inventoryRolePrefix+"${AWS::Region}]" {
			inventory = r
		}
	}
	if inventory == nil || !strings.Contains(fmt.Sprint(get(inventory, "AssumeRolePolicyDocument")), "${SecurityAccountId}:role/"+refresherRoleName) {
		t.Fatalf("inventory role %v", inventory)
	}
	var all []string
	for _, p := range policies {
		all = append(all, statements(p)...)
	}
	slices.Sort(all)
	want := []string{
		"events:PutEvents on map[Ref:CentralEventBusArn]",
		"lambda:ListFunctions on *",
		"securityhub:BatchImportFindings on map[Fn::Sub:arn:${AWS::Partition}:securityhub:${AWS::Region}:${AWS::AccountId}:product/${AWS::AccountId}/default]",
	}
	if diff := cmp.Diff(want, all); diff != "" {
		t.Errorf("forwarder policies (-want +got):\n%s", diff)
	}
	// The findings importer: trusted by the detector's role only, one per region.
	importer := where(t, tpl, "AWS::IAM::Role", "RoleName", config.ImporterRolePrefix)
	if trust := fmt.Sprint(get(importer, "AssumeRolePolicyDocument")); !strings.Contains(trust, "${SecurityAccountId}:role/"+detectorRoleName) || strings.Contains(trust, "Service") {
		t.Errorf("findings importer trust: %s", trust)
	}
}

// TestSuppress: the suppress setting is Security Hub automation rules that set matching
// future findings SUPPRESSED (Workflow only), matching what the findings carry: the
// resource ARNs, and the role resource's tags of source addresses and assumers.
func TestSuppress(t *testing.T) {
	tpl, _, _ := synth(t, map[string]string{"suppress": "function=arn:aws:lambda:eu-west-1:111122223333:function:dev-tool," +
		"role=arn:aws:iam::111122223333:role/dev-tool-role,principal=arn:aws:iam::111122223333:user/alice,cidr=203.0.113.0/24"})
	rules := resources(tpl, "AWS::SecurityHub::AutomationRule")
	if len(rules) != 4 {
		t.Fatalf("%d automation rules, want 4", len(rules))
	}
	var crit []string
	for _, r := range rules {
		if a := fmt.Sprint(r["Actions"]); !strings.Contains(a, "SUPPRESSED") || strings.Contains(a, "Note") || r["RuleStatus"] != "ENABLED" {
			t.Errorf("rule %v", r)
		}
		if !strings.Contains(fmt.Sprint(r["Criteria"]), "ProductName:[map[Comparison:EQUALS Value:Outsider]]") {
			t.Errorf("a rule that matches more than Outsider's findings: %v", r["Criteria"])
		}
		crit = append(crit, fmt.Sprint(get(r, "Criteria", "ResourceId"))+fmt.Sprint(get(r, "Criteria", "ResourceTags")))
	}
	all := strings.Join(crit, " ")
	for _, w := range []string{"arn:aws:lambda:eu-west-1:111122223333:function:dev-tool", "arn:aws:iam::111122223333:role/dev-tool-role",
		"Key:" + asff.TagAssumedBy + " Value:,arn:aws:iam::111122223333:user/alice,", "Key:" + asff.TagSourceIPs + " Value:,203.0.113."} {
		if !strings.Contains(all, w) {
			t.Errorf("no rule matches %s: %s", w, all)
		}
	}
	for _, bad := range []string{"function=dev-tool", "cidr=203.0.113.0/23", "cidr=2001:db8::/32", "host=x"} {
		if _, err := readSettings(func(k string) string { return map[string]string{ctxSuppress: bad}[k] }); err == nil || !strings.Contains(err.Error(), ctxSuppress) {
			t.Errorf("suppress=%s accepted: %v", bad, err)
		}
	}
}

// TestDrillCanary: -c drillPrincipal adds the canary: a role denying everything, a function
// only that principal may invoke, and the detector told its role.
func TestDrillCanary(t *testing.T) {
	tpl, _, _ := synth(t, map[string]string{"drillPrincipal": "arn:aws:iam::111122223333:role/secops"})
	fn := where(t, tpl, "AWS::Lambda::Function", "Description", "canary")
	perm := where(t, tpl, "AWS::Lambda::Permission", "Principal", "arn:aws:iam::")
	if perm["Principal"] != "arn:aws:iam::111122223333:role/secops" || perm["Action"] != "lambda:InvokeFunction" {
		t.Errorf("canary permission %v", perm)
	}
	role := where(t, tpl, "AWS::IAM::Role", "RoleName", canaryRoleName)
	if role == nil || fn["Role"] == nil {
		t.Fatalf("canary role %v", role)
	}
	deny := fmt.Sprint(sid(where(t, tpl, "AWS::IAM::Policy", "PolicyDocument", "DenyEverything"), "DenyEverything"))
	if !strings.Contains(deny, "Effect:Deny") || !strings.Contains(deny, "Action:*") {
		t.Errorf("canary role does not deny everything: %s", deny)
	}
	if env := fmt.Sprint(get(where(t, tpl, "AWS::Lambda::Function", "Environment", config.EnvTopicARN), "Environment")); !strings.Contains(env, config.EnvCanaryRole+":"+canaryRoleName) {
		t.Errorf("the detector does not know the canary: %s", env)
	}
	if _, err := readSettings(func(k string) string { return map[string]string{ctxDrill: "alice"}[k] }); err == nil {
		t.Error("drillPrincipal=alice accepted")
	}
	tpl, _, _ = synth(t, nil)
	for _, p := range resources(tpl, "AWS::Lambda::Permission") {
		if strings.Contains(fmt.Sprint(p["Principal"]), "arn:aws:iam::") {
			t.Errorf("a canary without drillPrincipal: %v", p)
		}
	}
}

// TestNag: cdk-nag's AwsSolutions checks raise no error that is not suppressed with a reason.
func TestNag(t *testing.T) {
	_, _, app := synth(t, map[string]string{"notificationEmail": "secops@example.org", "memberAccounts": "111122223333,444455556666", "drillPrincipal": "arn:aws:iam::111122223333:role/secops"})
	noPanic(t, func() {
		for _, name := range []string{"OutsiderDetector", "OutsiderForwarder"} {
			stack := app.Node().FindChild(jsii.String(name)).(awscdk.Stack)
			errs := assertions.Annotations_FromStack(stack).FindError(jsii.String("*"), assertions.Match_StringLikeRegexp(jsii.String("AwsSolutions-.*")))
			for _, e := range *errs {
				t.Errorf("%s: %+v", name, e)
			}
		}
	})
}

func TestSettings(t *testing.T) {
	_, err := readSettings(func(k string) string {
		return map[string]string{ctxEmail: "not-an-email", ctxOrganizationID: "org", ctxMemberAccounts: "123", ctxDedup: "soon", ctxBatchSize: "0",
			ctxASNSources: "http://example.org/asn.csv", ctxInventory: "yes", ctxReserve: "maybe", ctxSilence: "-1"}[k]
	})
	for _, name := range []string{ctxEmail, ctxOrganizationID, ctxMemberAccounts, config.EnvDedup, ctxBatchSize, ctxASNSources, ctxInventory, ctxReserve, ctxSilence} {
		if err == nil || !strings.Contains(err.Error(), name) {
			t.Errorf("error does not name %s: %v", name, err)
		}
	}
	tpl, _, _ := synth(t, nil)
	for _, sub := range resources(tpl, "AWS::SNS::Subscription") {
		if sub["Protocol"] == "email" {
			t.Error("an email subscription without an email")
		}
	}
	if !strings.Contains(fmt.Sprint(get(tpl, "Outputs", "Notifications", "Value")), "none") {
		t.Errorf("no output says there is no email: %v", get(tpl, "Outputs", "Notifications"))
	}
	if len(resources(tpl, "AWS::Events::EventBusPolicy")) != 0 {
		t.Error("a bus policy without an organisation or member accounts")
	}
}

// TestPatternOnEvents routes every sample event through an EventBridge rule with the
// stacks' pattern (moto's EventBridge, which implements the pattern language; it has no
// TestEventPattern) into a queue: what the detector needs arrives, what AWS services do on
// their own does not.
func TestPatternOnEvents(t *testing.T) {
	cfg := mototest.Config(t, nil)
	ctx := context.Background()
	eb, q := eventbridge.NewFromConfig(cfg), sqs.NewFromConfig(cfg)
	queue, err := q.CreateQueue(ctx, &sqs.CreateQueueInput{QueueName: aws.String(fmt.Sprintf("pattern-%d", os.Getpid()))})
	if err != nil {
		t.Fatal(err)
	}
	attrs, err := q.GetQueueAttributes(ctx, &sqs.GetQueueAttributesInput{QueueUrl: queue.QueueUrl, AttributeNames: []sqstypes.QueueAttributeName{sqstypes.QueueAttributeNameQueueArn}})
	if err != nil {
		t.Fatal(err)
	}
	bus := fmt.Sprintf("pattern-%d", os.Getpid())
	if _, err := eb.CreateEventBus(ctx, &eventbridge.CreateEventBusInput{Name: aws.String(bus)}); err != nil {
		t.Fatal(err)
	}
	pattern, _ := json.Marshal(eventPattern())
	if _, err := eb.PutRule(ctx, &eventbridge.PutRuleInput{Name: aws.String("outsider"), EventBusName: aws.String(bus), EventPattern: aws.String(string(pattern))}); err != nil {
		t.Fatal(err)
	}
	if _, err := eb.PutTargets(ctx, &eventbridge.PutTargetsInput{Rule: aws.String("outsider"), EventBusName: aws.String(bus),
		Targets: []ebtypes.Target{{Id: aws.String("queue"), Arn: aws.String(attrs.Attributes["QueueArn"])}}}); err != nil {
		t.Fatal(err)
	}

	files, _ := filepath.Glob("../events/*.json")
	if len(files) < 15 {
		t.Fatalf("%d sample events", len(files))
	}
	dropped := map[string]bool{ // AWS services calling on their own: source is a service name
		"noise-aws-service-call": true, "inside-service-call-invoked-by-lambda": true,
	}
	byID := map[string]string{}
	for _, f := range files {
		name := strings.TrimSuffix(filepath.Base(f), ".json")
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var env struct {
			Source     string          `json:"source"`
			DetailType string          `json:"detail-type"`
			Detail     json.RawMessage `json:"detail"`
		}
		if err := json.Unmarshal(b, &env); err != nil {
			t.Fatal(err)
		}
		var id struct{ EventID string }
		json.Unmarshal(env.Detail, &id)
		byID[id.EventID] = name
		if _, err := eb.PutEvents(ctx, &eventbridge.PutEventsInput{Entries: []ebtypes.PutEventsRequestEntry{{
			EventBusName: aws.String(bus), Source: aws.String(env.Source), DetailType: aws.String(env.DetailType), Detail: aws.String(string(env.Detail)),
		}}}); err != nil {
			t.Fatal(err)
		}
	}
	// A forged event: a real record's detail, put by someone else with another source.
	forged, _ := os.ReadFile("../events/outside-function-token-aws-cli.json")
	var fe struct {
		Detail json.RawMessage `json:"detail"`
	}
	if err := json.Unmarshal(forged, &fe); err != nil || len(fe.Detail) == 0 {
		t.Fatalf("events/outside-function-token-aws-cli.json: %v", err)
	}
	if _, err := eb.PutEvents(ctx, &eventbridge.PutEventsInput{Entries: []ebtypes.PutEventsRequestEntry{{
		EventBusName: aws.String(bus), Source: aws.String("custom.attacker"), DetailType: aws.String("AWS API Call via CloudTrail"),
		Detail: aws.String(strings.Replace(string(fe.Detail), `"eventID": "`, `"eventID": "forged-`, 1)),
	}}}); err != nil {
		t.Fatal(err)
	}
	arrived := map[string]bool{}
	forgedArrived := false
	for {
		out, err := q.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{QueueUrl: queue.QueueUrl, MaxNumberOfMessages: 10})
		if err != nil {
			t.Fatal(err)
		}
		if len(out.Messages) == 0 {
			break
		}
		for _, m := range out.Messages {
			var ev struct{ Detail struct{ EventID string } }
			json.Unmarshal([]byte(*m.Body), &ev)
			arrived[byID[ev.Detail.EventID]] = true
			forgedArrived = forgedArrived || strings.HasPrefix(ev.Detail.EventID, "forged-")
			q.DeleteMessage(ctx, &sqs.DeleteMessageInput{QueueUrl: queue.QueueUrl, ReceiptHandle: m.ReceiptHandle})
		}
	}
	for _, f := range files {
		name := strings.TrimSuffix(filepath.Base(f), ".json")
		if name == "odd-no-source-address" {
			continue // no address at all: irrelevant either way
		}
		if want := !dropped[name]; arrived[name] != want {
			t.Errorf("%s: routed = %v, want %v", name, arrived[name], want)
		}
	}
	if forgedArrived {
		t.Error("an event with source custom.attacker was routed to the detector")
	}
}
