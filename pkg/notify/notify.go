// Package notify turns a new finding into an email a person reads in five seconds, and
// publishes it to the SNS topic the team subscribed to.
package notify

import (
	"context"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sns"

	"github.com/outsider-sec/outsider/pkg/asff"
	"github.com/outsider-sec/outsider/pkg/detect"
)

// API is the part of the SNS client the notifier calls.
type API interface {
	Publish(context.Context, *sns.PublishInput, ...func(*sns.Options)) (*sns.PublishOutput, error)
}

// maxSubject is SNS's limit for an email subject.
// https://docs.aws.amazon.com/sns/latest/api/API_Publish.html
const maxSubject = 100

// Subject is the email's subject line.
func Subject(f detect.Finding) string {
	who := f.Function
	if who == "" {
		who = "role " + f.Role
	}
	s := fmt.Sprintf("[%s] %s: %s (%s)", f.Severity, f.Title, who, f.Account)
	if len(s) > maxSubject {
		s = s[:maxSubject-3] + "..."
	}
	return s
}

// ConsoleURL links to the finding in the Security Hub console of region.
func ConsoleURL(region, id string) string {
	search := "Id=" + url.QueryEscape(`\operator\:EQUALS\:`+id)
	return fmt.Sprintf("https://%s.console.aws.amazon.com/securityhub/home?region=%s#/findings?search=%s", region, region, url.QueryEscape(search))
}

// Body is the email's text; now is when it is sent (the containment denies sessions issued before).
func Body(f detect.Finding, hubRegion string, now time.Time) string {
	var b strings.Builder
	line := func(format string, args ...any) { fmt.Fprintf(&b, format+"\n", args...) }
	line("%s — severity %s", f.Title, f.Severity)
	line("")
	if f.Function != "" {
		line("Function:  %s (%s)", f.Function, f.FunctionARN)
	}
	line("Role:      %s", f.RoleARN)
	line("Account:   %s, region %s", f.Account, f.Region)
	line("Session:   %s, key %s", f.Session, strings.Join(f.AccessKeys, ", "))
	if f.IssuedBy != "" {
		line("Assumed by: %s", f.IssuedBy)
	}
	var from []string
	for _, s := range f.Sources {
		d := s.IP
		if s.ASN != 0 {
			d += fmt.Sprintf(" (AS%d %s)", s.ASN, s.Org)
		}
		from = append(from, d)
	}
	line("From:      %s", strings.Join(from, ", "))
	line("When:      %s to %s, %d call(s), %d failed", f.FirstSeen.UTC().Format(time.RFC3339), f.LastSeen.UTC().Format(time.RFC3339), f.Count, f.Failed)
	line("Calls:     %s", strings.Join(f.CallNames(), ", "))
	if len(f.UserAgents) > 0 {
		line("Client:    %s", f.UserAgents[0])
	}
	if !f.KeysExpire.IsZero() {
		line("Expires:   %s (the key stays usable until then unless its sessions are revoked)", f.KeysExpire.UTC().Format(time.RFC3339))
	}
	line("")
	line("What happened: %s", asff.Description(f))
	line("")
	line("The investigation, as far as the detector knows:")
	for i, step := range asff.Steps(f) {
		line("%d. %s", i+1, step)
	}
	for _, a := range f.AssumedBy {
		line("   - %s assumed %s at %s from %s", a.By, f.Role, a.At.UTC().Format(time.RFC3339), a.SourceIP)
	}
	line("")
	line("Act from account %s (the function's), with a role that may read CloudTrail and change IAM roles.", f.Account)
	line("Every call of every key (%d), management events only — data events (S3 objects, Lambda invocations) are", len(f.AccessKeys))
	line("in CloudTrail Lake or an Athena table over the trail's bucket, if the trail logs them:")
	line("  %s", asff.LookupAllCommand(f))
	line("")
	line("Contain: deny every session of the role issued before now (what IAM's \"Revoke active sessions\" does).")
	line("The function's own live sessions end too: its warm execution environments fail their AWS calls")
	line("until Lambda replaces them (publishing a new version or changing its configuration does); new")
	line("environments get new credentials, which work. Then rotate what the role can read and find how")
	line("the key left the function.")
	line("  %s", asff.RevokeCommand(f.Role, now))
	line("")
	line("Finding: %s", ConsoleURL(hubRegion, f.ID))
	return b.String()
}

// UpdateSubject is the subject of an update's email.
func UpdateSubject(f detect.Finding) string {
	s := "[UPDATE] " + Subject(f)
	if len(s) > maxSubject {
		s = s[:maxSubject-3] + "..."
	}
	return s
}

// UpdateBody is the email of a finding emailed before that now holds keys or source
// addresses the earlier emails did not name: what is new first, then the whole finding.
func UpdateBody(f detect.Finding, newKeys, newSources []string, hubRegion string, now time.Time) string {
	var b strings.Builder
	b.WriteString("New since the last email about this finding:\n")
	if len(newKeys) > 0 {
		fmt.Fprintf(&b, "  access key(s): %s\n", strings.Join(newKeys, ", "))
	}
	if len(newSources) > 0 {
		fmt.Fprintf(&b, "  source address(es): %s\n", strings.Join(newSources, ", "))
	}
	b.WriteString("\n")
	b.WriteString(Body(f, hubRegion, now))
	return b.String()
}

// Notifier publishes new findings to a topic.
type Notifier struct {
	api       API
	topic     string
	hubRegion string
}

// New returns a notifier. A notifier without a topic publishes nothing.
func New(api API, topicARN, hubRegion string) *Notifier {
	return &Notifier{api: api, topic: topicARN, hubRegion: hubRegion}
}

// Enabled reports whether there is a topic to publish to.
func (n *Notifier) Enabled() bool { return n != nil && n.topic != "" }

// PublishUpdate sends the email of a finding that holds new keys or source addresses.
func (n *Notifier) PublishUpdate(ctx context.Context, f detect.Finding, newKeys, newSources []string) error {
	if !n.Enabled() {
		return nil
	}
	_, err := n.api.Publish(ctx, &sns.PublishInput{
		TopicArn: aws.String(n.topic),
		Subject:  aws.String(UpdateSubject(f)),
		Message:  aws.String(UpdateBody(f, newKeys, newSources, n.hubRegion, time.Now())),
	})
	if err != nil {
		return fmt.Errorf("sns: publish the update of %s: %w", f.ID, err)
	}
	return nil
}

// Publish sends the email of a new finding.
func (n *Notifier) Publish(ctx context.Context, f detect.Finding) error {
	if !n.Enabled() {
		return nil
	}
	_, err := n.api.Publish(ctx, &sns.PublishInput{
		TopicArn: aws.String(n.topic),
		Subject:  aws.String(Subject(f)),
		Message:  aws.String(Body(f, n.hubRegion, time.Now())),
	})
	if err != nil {
		return fmt.Errorf("sns: publish %s: %w", f.ID, err)
	}
	return nil
}
