package detect

import (
	"context"
	"slices"
	"strconv"
	"strings"

	"time"

	"github.com/outsider-sec/outsider/pkg/awsid"
	"github.com/outsider-sec/outsider/pkg/cloudtrail"
)

// Interactive command-line and attack tools, by a lower-case piece of their user agent
// (title 2). The AWS CLI writes "aws-cli/VERSION" (S3's logs bracket it: "[aws-cli/…]");
// AWS Tools for PowerShell "AWSPowerShell…" or "…PowerShell/VERSION"; offensive tools
// and the distributions they run on often keep their name in it (GuardDuty's PenTest
// findings look for Kali, Parrot and Pentoo the same way).
// https://docs.aws.amazon.com/guardduty/latest/ug/guardduty_finding-types-iam.html#pentest-iam-kalilinux
var cliAgents = []string{
	"aws-cli/", "awspowershell", "powershell/", "aws-shell", "pacu", "scoutsuite", "scout suite",
	"cloudfox", "prowler", "stratus-red-team", "stratus red team", "cloudsploit", "weirdaal", "enumerate-iam",
	"cloudmapper", "kali", "parrot", "pentoo", "blackarch",
}

// CommandLine reports whether a user agent is an interactive command-line or attack tool.
func CommandLine(ua string) bool {
	if len(ua) > 1024 {
		ua = ua[:1024] // a tool names itself first; a longer agent costs no more to read
	}
	ua = strings.ToLower(ua)
	for _, a := range cliAgents {
		if strings.Contains(ua, a) {
			return true
		}
	}
	return false
}

type sessionKind int

const (
	sessUnknown  sessionKind = iota // not a Lambda role's session, nor a key a function obtained
	sessFunction                    // a function's own session
	sessChained                     // a key a function's session obtained: still the function's
	sessOther                       // a Lambda role's session Lambda did not issue
)

// session is what was known at t of a role session: derived once per record.
type session struct {
	account, role, name, key string
	kind                     sessionKind
	lambdaRole               bool
	person                   bool      // obtained by a person
	issuedBy                 string    // who obtained the key, when not Lambda
	fn, region               string    // the function, for sessFunction and sessChained
	fnAccount, fnRole        string    // the function's account and own role (differ when chained)
	expires                  time.Time // when the key expires, as its issue said (zero: unknown)
}

// resolve tells whose a role session's key was at t (the package documentation, "What
// counts as a Lambda's token").
func (d *Detector) resolve(ctx context.Context, c *caller, key string, t time.Time) (session, error) {
	s := session{account: c.roleAcct, role: c.role, name: c.name, key: key}
	s.fnAccount, s.fnRole = s.account, s.role
	var err error
	if s.lambdaRole, err = d.isLambdaRole(ctx, s.account, s.role, t); err != nil {
		return s, err
	}
	if !s.lambdaRole && strings.HasPrefix(s.role, "AWSReservedSSO_") {
		// An Identity Center session: a person's. Only a SAML provider can assume these
		// roles, so it is no function's chained token either.
		// https://docs.aws.amazon.com/singlesignon/latest/userguide/using-service-linked-roles.html
		return s, nil
	}
	is, err := d.issuedAt(ctx, s.key, t)
	if err != nil {
		return s, err
	}
	if is != nil {
		s.expires = is.Expires
	}
	switch {
	case is != nil && is.Lambda:
		s.kind, s.region = sessFunction, is.Region
		if !strings.HasPrefix(s.name, "awslambda_") {
			s.fn = functionOfSession(s.name)
		}
	case is != nil && is.Function != nil:
		f := is.Function
		s.kind, s.fn, s.region, s.fnAccount, s.fnRole = sessChained, f.Name, f.Region, f.Account, f.Role
	case is != nil:
		s.issuedBy, s.person = is.By, is.Person
		if !s.lambdaRole {
			return s, nil
		}
		s.kind = sessOther
	case !s.lambdaRole:
		return s, nil
	default:
		fn := functionOfSession(s.name)
		ok, region, err := d.functionAt(ctx, s.account, s.role, fn, t)
		switch {
		case err != nil:
			return s, err
		case ok:
			s.kind, s.fn, s.region = sessFunction, fn, region
		case strings.HasPrefix(s.name, "awslambda_"):
			s.kind = sessFunction
		default:
			s.kind = sessOther // neither a function of the role nor Lambda's session name
		}
	}
	if s.kind == sessFunction && s.fn == "" {
		if f, ok := d.inv.only(s.account, s.role); ok {
			s.fn, s.region = f.Name, f.Region
		}
	}
	if (s.kind == sessFunction || s.kind == sessChained) && s.fn != "" {
		if f, ok := d.inv.function(s.fnAccount, s.fnRole, s.fn); ok {
			s.region = f.Region
		} else if s.region == "" {
			_, region, err := d.functionAt(ctx, s.fnAccount, s.fnRole, s.fn, t)
			if err != nil {
				return s, err
			}
			s.region = region
		}
	}
	return s, nil
}

// person reports whether a role session from outside was a person's (for known ASNs):
// Identity Center and SAML sessions, and sessions a person obtained. Lambda sessions, EC2
// instance sessions and sessions of unknown origin are not.
func (s *session) personal() bool {
	switch {
	case s.kind == sessFunction || s.kind == sessChained || s.lambdaRole:
		return false
	case strings.HasPrefix(s.role, "AWSReservedSSO_"):
		return true
	case strings.HasPrefix(s.name, "i-"):
		return false
	}
	return s.person
}

// roleSessionOutside handles a role session's call from a public address outside AWS (or
// from a trusted network): a function's token used from outside, or a person's call that
// makes an ASN known.
func (d *Detector) roleSessionOutside(ctx context.Context, r *cloudtrail.Record, c *caller, where Where) error {
	s, err := d.resolve(ctx, c, r.Identity.AccessKeyID, r.Time)
	if err != nil {
		return err
	}
	if s.kind == sessUnknown || s.kind == sessOther && where == Trusted {
		if r.Succeeded() && s.personal() {
			return d.knownASN(ctx, r, c.account)
		}
		return nil
	}
	if where == Trusted {
		return nil // the operator's own network
	}
	return d.outside(ctx, r, c, &s, where)
}

// SignalForeignEndpoint: the call came through a VPC endpoint of an account that is not
// the organisation's.
const SignalForeignEndpoint = "foreign-vpc-endpoint"

// presignedObjectOps are the S3 object operations a presigned URL is made for: signed by
// the function, made by whoever holds the URL (its customers). Any other call signed by
// query string is usage like any other: a thief can sign query strings too.
// https://docs.aws.amazon.com/AmazonS3/latest/userguide/using-presigned-url.html
var presignedObjectOps = []string{
	"GetObject", "HeadObject", "PutObject", "CreateMultipartUpload", "UploadPart",
	"CompleteMultipartUpload", "AbortMultipartUpload",
}

// presignedUse reports whether a call is a presigned URL's use: an S3 object operation
// authenticated by query string.
func presignedUse(r *cloudtrail.Record) bool {
	return r.Presigned && r.Source == "s3.amazonaws.com" && slices.Contains(presignedObjectOps, r.Name)
}

// outside decides on a call from outside AWS with a Lambda function's token, or with a
// Lambda role's session that Lambda did not issue.
func (d *Detector) outside(ctx context.Context, r *cloudtrail.Record, c *caller, s *session, where Where) error {
	d.Stats.LambdaUsed++
	t := r.Time
	ip := r.Addr.String()
	if !r.Addr.IsValid() {
		ip = r.SourceIP
	}
	u := use{
		at: t, recipient: r.RecipientAccount, eventID: r.EventID, ip: ip, service: r.Source, name: r.Name, region: r.Region,
		errorCode: r.ErrorCode, userAgent: r.UserAgent, key: s.key, keyExpires: s.expires, signals: []string{SignalOutside},
	}
	if where == ForeignEndpoint {
		u.signals = append(u.signals, SignalForeignEndpoint)
	}
	if s.kind == sessOther {
		u.signals = append(u.signals, SignalNotIssued)
	}
	if s.kind == sessChained {
		u.signals = append(u.signals, SignalChained)
	}
	if CommandLine(r.UserAgent) {
		u.signals = append(u.signals, SignalCLI)
	}
	account := s.fnAccount
	if number, org, ok := d.asns.ASN(r.Addr); ok && where == Outside {
		u.asn, u.org = number, org
		known, _, err := d.seen(ctx, fact{prefix: keyASN, a: account, b: strconv.FormatUint(uint64(number), 10)}, t)
		if err != nil {
			return err
		}
		if known {
			u.signals = append(u.signals, SignalKnownASN)
		}
	}
	inside, e, err := d.seen(ctx, fact{prefix: keyInside, a: s.key}, t)
	if err != nil {
		return err
	}
	if inside {
		u.signals = append(u.signals, SignalKeyInside)
		u.inside = &Sighting{At: time.Unix(e.v.Days[0][0], 0).UTC(), IP: e.v.IP}
	}
	if r.ErrorCode != "" {
		u.signals = append(u.signals, SignalFailedCalls)
	}

	title := TitleOf(u.signals, false)

	kind, subject := SubjectFunction, ""
	partition := c.partition
	f := Finding{
		Title: title, Severity: d.cfg.Severity[title], Account: account, Partition: partition,
		Role: s.fnRole, Session: s.name, IssuedBy: s.issuedBy,
	}
	f.RoleARN = awsid.RoleARN(partition, account, s.fnRole)
	if s.kind != sessChained && r.Identity.IssuerARN != "" {
		f.RoleARN = r.Identity.IssuerARN
	}
	if s.kind == sessChained {
		f.ChainedRoleARN = r.Identity.IssuerARN
		if f.ChainedRoleARN == "" {
			f.ChainedRoleARN = awsid.RoleARN(partition, s.account, s.role)
		}
	}
	region := s.region
	if title != TitleRole && s.fn != "" {
		f.Function = s.fn
		if region == "" {
			region = r.Region
			u.signals = append(u.signals, SignalUnknownRegion)
		}
		f.FunctionARN = awsid.FunctionARN(partition, region, account, s.fn)
		subject = region + ":" + s.fn
	} else {
		kind, subject = SubjectRole, s.fnRole
	}
	if region == "" {
		region = r.Region
	}
	f.Region, f.SubjectKind, f.Subject = region, kind, subject

	if d.cfg.CanaryRole != "" && s.fnRole == d.cfg.CanaryRole && account == d.cfg.CanaryAccount {
		// The drill: proof that the path works, the day the stack is deployed.
		f.Drill, f.Severity = true, "INFORMATIONAL"
		u.signals = append(u.signals, SignalDrill)
	} else {
		active, err := d.active(ctx, account, t)
		if err != nil {
			return err
		}
		if !active {
			d.Stats.Inactive++
			return nil // the account is still in its activation period
		}
	}
	if d.cfg.TrainOnly {
		return nil
	}
	if presignedUse(r) && !d.cfg.PresignedFindings {
		// Signed by the function, made by whoever holds the URL: a signal of a finding
		// for the same key, never a finding of its own.
		d.Stats.Presigned++
		return d.presigned(ctx, f, u)
	}
	return d.record(ctx, f, u)
}

// SignalDrill: the token is the drill's canary's (outsider drill).
const SignalDrill = "drill"

// SignalCrossRegion: the call came from an AWS address of another region than the function's.
const SignalCrossRegion = "token-used-from-another-aws-region"

// crossRegion raises TitleCrossRegion for a function's own session calling from an AWS
// address in another region than the function's. An unknown region, or a global prefix,
// raises nothing.
func (d *Detector) crossRegion(ctx context.Context, r *cloudtrail.Record, c *caller) error {
	rl, ok := d.ranges.(RegionLookup)
	if !ok {
		return nil
	}
	id := &r.Identity
	account, role, fn := c.roleAcct, c.role, functionOfSession(c.name)
	from := rl.Region(r.Addr)
	if from == "" || from == "GLOBAL" {
		return nil
	}
	known, fnRegion, err := d.functionAt(ctx, account, role, fn, r.Time)
	if err != nil || !known || fnRegion == "" || fnRegion == from {
		return err
	}
	d.Stats.CrossRegion++
	if active, err := d.active(ctx, account, r.Time); err != nil || !active || d.cfg.TrainOnly {
		return err
	}
	partition := c.partition
	f := Finding{
		Title: TitleOf([]string{SignalCrossRegion}, true), Severity: d.cfg.Severity[TitleCrossRegion], Account: account, Partition: partition, Region: fnRegion,
		SubjectKind: SubjectFunction, Subject: fnRegion + ":" + fn, Function: fn, Role: role, RoleARN: id.IssuerARN, Session: c.name,
		FunctionARN: awsid.FunctionARN(partition, fnRegion, account, fn),
	}
	u := use{
		at: r.Time, recipient: r.RecipientAccount, eventID: r.EventID, ip: r.Addr.String(), service: r.Source, name: r.Name, region: r.Region,
		errorCode: r.ErrorCode, userAgent: r.UserAgent, key: id.AccessKeyID, signals: []string{SignalCrossRegion},
	}
	if CommandLine(r.UserAgent) {
		u.signals = append(u.signals, SignalCLI)
	}
	return d.record(ctx, f, u)
}
