package notify

import (
	"context"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/sns"
	"github.com/google/go-cmp/cmp"

	"github.com/outsider-sec/outsider/pkg/detect"
)

var update = flag.Bool("update", false, "rewrite the golden files")

var t0 = time.Date(2026, 5, 20, 14, 0, 0, 0, time.UTC)

func cases() map[string]detect.Finding {
	fn := detect.Finding{
		ID: "outsider/123456789012/function/thumbnailer/cli/20260520T140000Z", Title: detect.TitleCLI, Severity: "HIGH",
		Account: "123456789012", Partition: "aws", Region: "eu-west-1", SubjectKind: detect.SubjectFunction, Subject: "thumbnailer",
		Function: "thumbnailer", FunctionARN: "arn:aws:lambda:eu-west-1:123456789012:function:thumbnailer",
		Role: "thumbnailer-role", RoleARN: "arn:aws:iam::123456789012:role/thumbnailer-role", Session: "thumbnailer",
		Signals: []string{detect.SignalOutside, detect.SignalCLI}, PeriodStart: t0, FirstSeen: t0, LastSeen: t0.Add(80 * time.Second),
		Count: 3, AccessKeys: []string{"ASIAEXAMPLEKEY000001"}, Sources: []detect.Source{{IP: "27.192.8.8", ASN: 4837, Org: "CNCGROUP China169 Backbone", Count: 3}},
		Calls:      []detect.Call{{Service: "sts.amazonaws.com", Name: "GetCallerIdentity", Count: 1}, {Service: "s3.amazonaws.com", Name: "ListBuckets", Count: 1}, {Service: "iam.amazonaws.com", Name: "ListRoles", Count: 1}},
		UserAgents: []string{"aws-cli/2.22.0 md/awscrt#0.22.0 ua/2.0 os/linux#6.8.0"},
		Attached:   detect.AttachedYes, AttachedDetail: "the function was given this role on 2026-05-04T00:00:30Z",
	}
	role := fn
	role.ID, role.Title, role.Severity = "outsider/123456789012/role/a-very-long-role-name-for-the-webhook-relay-service-in-production/role/20260524T150000Z", detect.TitleRole, "MEDIUM"
	role.SubjectKind, role.Subject, role.Function, role.FunctionARN, role.Session = detect.SubjectRole, "a-very-long-role-name-for-the-webhook-relay-service-in-production", "", "", "debug-session"
	role.Role, role.RoleARN = role.Subject, "arn:aws:iam::123456789012:role/"+role.Subject
	role.IssuedBy = "arn:aws:iam::123456789012:user/mallory"
	role.Attached, role.AttachedDetail = detect.AttachedUnknown, ""
	role.AssumedBy = []detect.Assumption{{By: "arn:aws:iam::123456789012:user/mallory", At: t0.Add(-time.Hour), SourceIP: "27.192.8.8"}}
	return map[string]detect.Finding{"cli": fn, "role": role}
}

func TestEmailGolden(t *testing.T) {
	for name, f := range cases() {
		t.Run(name, func(t *testing.T) {
			subject := Subject(f)
			if len(subject) > maxSubject {
				t.Errorf("subject of %d characters: %s", len(subject), subject)
			}
			got := "Subject: " + subject + "\n\n" + Body(f, "eu-west-1", f.LastSeen.Add(time.Hour))
			path := filepath.Join("testdata", name+".txt")
			if *update {
				os.WriteFile(path, []byte(got), 0o644)
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run with -update)", err)
			}
			if diff := cmp.Diff(string(want), got); diff != "" {
				t.Errorf("email (-want +got):\n%s", diff)
			}
			for _, must := range []string{f.Role, f.Account, "27.192.8.8", "aws cloudtrail lookup-events", "https://eu-west-1.console.aws.amazon.com/securityhub/"} {
				if !strings.Contains(got, must) {
					t.Errorf("email lacks %q", must)
				}
			}
		})
	}
}

type fakeSNS struct{ in []*sns.PublishInput }

func (f *fakeSNS) Publish(_ context.Context, in *sns.PublishInput, _ ...func(*sns.Options)) (*sns.PublishOutput, error) {
	f.in = append(f.in, in)
	return &sns.PublishOutput{}, nil
}

func TestPublish(t *testing.T) {
	api := &fakeSNS{}
	n := New(api, "arn:aws:sns:eu-west-1:111122223333:findings", "eu-west-1")
	if err := n.Publish(context.Background(), cases()["cli"]); err != nil || len(api.in) != 1 || *api.in[0].TopicArn != "arn:aws:sns:eu-west-1:111122223333:findings" {
		t.Fatalf("publish: %v %d", err, len(api.in))
	}
	off := New(api, "", "eu-west-1")
	if off.Enabled() || off.Publish(context.Background(), cases()["cli"]) != nil || len(api.in) != 1 {
		t.Error("a notifier without a topic published")
	}
}
