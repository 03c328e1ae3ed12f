// Package asff turns a detector finding into an AWS Security Finding Format finding for
// Security Hub, with the SDK's own types, and renders it as JSON.
// https://docs.aws.amazon.com/securityhub/latest/userguide/securityhub-findings-format.html
package asff

import (
	"fmt"
	"net/netip"
	"reflect"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/securityhub/types"
	gojson "github.com/goccy/go-json"

	"github.com/outsider-sec/outsider/pkg/awsid"
	"github.com/outsider-sec/outsider/pkg/detect"
)

// SchemaVersion is the only ASFF schema version.
const SchemaVersion = "2018-10-08"

// Product names the Security Hub product that imports the findings: the importing
// account's "default" product, whose findings must carry that account as AwsAccountId.
// https://docs.aws.amazon.com/securityhub/latest/userguide/securityhub-custom-providers.html
type Product struct {
	Partition string // "aws"
	Region    string // where Security Hub imports the findings
	Account   string // the security account running the detector
}

// ARN is the product ARN of the account's default product.
func (p Product) ARN() string {
	return awsid.ProductARN(p.Partition, p.Region, p.Account)
}

// Security Hub's limits on the fields we fill.
// https://docs.aws.amazon.com/securityhub/1.0/APIReference/API_AwsSecurityFinding.html
const (
	maxDescription  = 1024
	maxRemediation  = 512
	maxFieldValue   = 2048
	generatorPrefix = "outsider/"
)

// FieldFiledIn marks, in ProductFields, a finding filed in the security account although it
// is about a member account (whose importer role was missing or refused).
const FieldFiledIn = "outsider/FiledIn"

// ForChange returns the ASFF finding of a change: an update leaves Severity and Types to
// FindingProviderFields only, since the top-level ones are the analysts' (BatchUpdateFindings)
// once a finding exists.
// https://docs.aws.amazon.com/securityhub/latest/userguide/finding-update-batchimportfindings.html
func ForChange(c detect.Change, p Product) types.AwsSecurityFinding {
	out := Build(c.Finding, p)
	if !c.New {
		out.Severity, out.Types = nil, nil
	}
	return out
}

// Build returns the ASFF finding for f as it is created, imported by product p.
func Build(f detect.Finding, p Product) types.AwsSecurityFinding {
	created := ts(f.PeriodStart)
	last := ts(f.LastSeen)
	updated := last
	if !f.Revised.IsZero() {
		// Later for every stored version: Security Hub ignores an import that is not.
		updated = f.Revised.UTC().Format("2006-01-02T15:04:05.000Z07:00")
	}
	sev := &types.Severity{Label: types.SeverityLabel(f.Severity), Original: aws.String(f.Severity)}
	typ := []string{"TTPs/Credential Access", "Unusual Behaviors/User"}
	out := types.AwsSecurityFinding{
		SchemaVersion:   aws.String(SchemaVersion),
		Id:              aws.String(f.ID),
		ProductArn:      aws.String(p.ARN()),
		ProductName:     aws.String("Outsider"),
		CompanyName:     aws.String("Outsider"),
		GeneratorId:     aws.String(generatorPrefix + f.Title.Code()),
		AwsAccountId:    aws.String(p.Account),
		Region:          aws.String(p.Region),
		Types:           typ,
		CreatedAt:       aws.String(created),
		UpdatedAt:       aws.String(updated),
		FirstObservedAt: aws.String(ts(f.FirstSeen)),
		LastObservedAt:  aws.String(last),
		Severity:        sev,
		FindingProviderFields: &types.FindingProviderFields{
			Severity: &types.FindingProviderSeverity{Label: types.SeverityLabel(f.Severity), Original: aws.String(f.Severity)},
			Types:    typ,
		},
		Title:       aws.String(string(f.Title)),
		Description: aws.String(clip(Description(f), maxDescription)),
		Resources:   resources(f),
		Action:      action(f),
		Remediation: &types.Remediation{Recommendation: &types.Recommendation{
			Text: aws.String(clip(Recommendation(f), maxRemediation)),
		}},
		ProductFields: productFields(f),
		RecordState:   types.RecordStateActive,
	}
	if len(f.Sources) > 0 {
		if a, err := netip.ParseAddr(f.Sources[0].IP); err == nil && a.Is6() {
			out.Network = &types.Network{Direction: types.NetworkDirectionIn, SourceIpV6: aws.String(a.String())}
		}
	}
	return out
}

func ts(t time.Time) string { return t.UTC().Format(time.RFC3339) }

// Description says what happened in one paragraph: who, from where, then what the title
// adds (from the title table).
func Description(f detect.Finding) string {
	spec, _ := f.Title.Spec()
	var b strings.Builder
	switch {
	case f.SubjectKind == detect.SubjectRole:
		fmt.Fprintf(&b, "A session %q of the Lambda execution role %s", f.Session, f.Role)
		if f.IssuedBy != "" {
			fmt.Fprintf(&b, " (the role was assumed by %s)", f.IssuedBy)
		}
		b.WriteString(" was used")
	default:
		fmt.Fprintf(&b, "The temporary credentials of Lambda function %s (role %s", f.Function, f.Role)
		if f.ChainedRoleARN != "" {
			fmt.Fprintf(&b, ", through the role %s that its session assumed", f.ChainedRoleARN)
		}
		b.WriteString(") were used")
	}
	where := "from outside AWS"
	if spec.Inside {
		where = "from an AWS address"
	}
	count := strconv.Itoa(f.Count)
	if f.Saturated {
		count = "at least " + count
	}
	fmt.Fprintf(&b, " %s in account %s: %s call(s) from %s between %s and %s.",
		where, f.Account, count, strings.Join(f.SourceIPs(), ", "), ts(f.FirstSeen), ts(f.LastSeen))
	if spec.About != "" {
		b.WriteString(" " + spec.About)
	}
	if f.Failed > 0 {
		fmt.Fprintf(&b, " %d call(s) failed.", f.Failed)
	}
	if f.Presigned > 0 {
		fmt.Fprintf(&b, " The period also holds %d presigned-URL use(s) of the function's S3 objects (listed in the signals), which open no finding.", f.Presigned)
	}
	return b.String()
}

// Recommendation is the investigation (is the role attached, who assumed it, which calls
// the keys made) and the containment step, filled in, within Security Hub's 512
// characters: when it does not fit, the details are dropped and then shortened, never a
// step, and it says where the full text is (the email, ProductFields).
func Recommendation(f detect.Finding) string {
	join := func(steps []string) string {
		for i := range steps {
			steps[i] = fmt.Sprintf("%d. %s", i+1, steps[i])
		}
		return strings.Join(steps, " ")
	}
	noCalls := f
	noCalls.Calls = nil
	bare := noCalls
	bare.AttachedDetail = ""
	var text string
	for _, try := range []struct {
		f     detect.Finding
		terse int
	}{{f, 0}, {f, 1}, {noCalls, 1}, {bare, 1}, {bare, 2}, {bare, 3}} {
		if text = join(steps(try.f, try.terse)); len(text) <= maxRemediation {
			break
		}
	}
	return clip(text, maxRemediation)
}

// Steps are the investigation, answered as far as the detector knows — is the role
// attached to the function, was it assumed by another identity, which calls did the keys
// make (and where to see them all) — and the containment step with its consequence.
func Steps(f detect.Finding) []string { return steps(f, 0) }

// steps says them at four lengths: terse 1 to 3 shorten the steps so that the
// recommendation fits Security Hub's 512 characters, pointing to where the rest is.
func steps(f detect.Finding, terse int) []string {
	var steps []string
	switch {
	case f.Function == "" && f.Attached == detect.AttachedYes && f.AttachedDetail == "":
		steps = append(steps, fmt.Sprintf("Role attached: yes: %s is a function's role.", f.Role))
	case f.Function == "" && f.Attached == detect.AttachedYes:
		steps = append(steps, fmt.Sprintf("Role attached: yes: %s is %s.", f.Role, f.AttachedDetail))
	case f.Function == "":
		steps = append(steps, fmt.Sprintf("Role attached: unknown: no function of role %s is known; list them (aws lambda list-functions).", f.Role))
	case f.Attached == detect.AttachedYes && f.AttachedDetail == "":
		steps = append(steps, fmt.Sprintf("Role attached: yes: %s is %s's role.", f.Role, f.Function))
	case f.Attached == detect.AttachedYes:
		steps = append(steps, fmt.Sprintf("Role attached: yes: %s is %s's role (%s).", f.Role, f.Function, f.AttachedDetail))
	case f.Attached == detect.AttachedNo && f.AttachedDetail == "":
		steps = append(steps, "Role attached: no longer. Who changed it, and did the key outlive it?")
	case f.Attached == detect.AttachedNo:
		steps = append(steps, fmt.Sprintf("Role attached: no longer: %s. Who changed it, and did the key outlive it?", f.AttachedDetail))
	default:
		steps = append(steps, fmt.Sprintf("Role attached: unknown: check (aws lambda get-function-configuration --function-name %s --region %s).", f.Function, f.Region))
	}
	switch n := len(f.AssumedBy); {
	case terse >= 3 && (f.IssuedBy != "" || n > 0):
		steps = append(steps, fmt.Sprintf("Assumed by another identity: yes, %d time(s): see outsider/RoleAssumedBy and outsider/SessionIssuedBy.", max(n, 1)))
	case f.IssuedBy != "":
		steps = append(steps, fmt.Sprintf("Assumed by another identity: yes: this session's key came from %s%s.", f.IssuedBy, moreAssumers(f, 1)))
	case n > 0:
		a := f.AssumedBy[n-1]
		steps = append(steps, fmt.Sprintf("Assumed by another identity: yes: %s at %s from %s%s.", a.By, ts(a.At), a.SourceIP, moreAssumers(f, 1)))
	default:
		steps = append(steps, "Assumed by another identity: none seen in the training period.")
	}
	calls := f.CallNames()
	if len(calls) > 5 {
		calls = append(calls[:5], "…")
	}
	keys := ""
	if n := len(f.AccessKeys); n > 1 {
		keys = fmt.Sprintf(" (one of %d keys: all in outsider/AccessKeys)", n)
	}
	expiry := ""
	if !f.KeysExpire.IsZero() {
		expiry = " The key expires at " + ts(f.KeysExpire) + "."
	}
	switch terse {
	case 0:
		steps = append(steps,
			fmt.Sprintf("Calls by the key from outside: %d (%d failed): %s. In account %s, management events (data events: CloudTrail Lake or Athena over the trail): %s%s",
				f.Count, f.Failed, strings.Join(calls, ", "), f.Account, LookupCommand(f), keys),
			fmt.Sprintf("Contain: revoke role %s's sessions issued before now (IAM console, Revoke sessions: a deny on aws:TokenIssueTime); the function's live sessions end too (redeploy it for new ones).%s", f.Role, expiry))
	case 1:
		list := ""
		if len(calls) > 0 {
			list = ": " + strings.Join(calls, ", ")
		}
		steps = append(steps,
			fmt.Sprintf("Calls by the key from outside: %d (%d failed)%s. In account %s: %s%s", f.Count, f.Failed, list, f.Account, LookupCommand(f), keys),
			"Contain: revoke the role's older sessions in IAM (the function's end too).")
	default:
		steps = append(steps,
			fmt.Sprintf("Calls by the key from outside: %d (%d failed), %d key(s): lookup-events per key in account %s (keys in outsider/AccessKeys, calls in outsider/ApiCalls).", f.Count, f.Failed, len(f.AccessKeys), f.Account),
			fmt.Sprintf("Contain: revoke %s's sessions issued before now; the function's live ones end too.", f.Role))
	}
	return steps
}

func moreAssumers(f detect.Finding, shown int) string {
	if n := len(f.AssumedBy) - shown; n > 0 {
		return fmt.Sprintf(", and %d more assumption(s)", n)
	}
	return ""
}

// LookupCommand is the CloudTrail command that lists every call made with the finding's
// (first) access key; LookupAllCommand covers every key.
func LookupCommand(f detect.Finding) string {
	key := ""
	if len(f.AccessKeys) > 0 {
		key = f.AccessKeys[0]
	}
	return fmt.Sprintf("aws cloudtrail lookup-events --region %s --lookup-attributes AttributeKey=AccessKeyId,AttributeValue=%s", f.Region, key)
}

// LookupAllCommand is a shell loop over LookupCommand for every key of the finding.
func LookupAllCommand(f detect.Finding) string {
	if len(f.AccessKeys) <= 1 {
		return LookupCommand(f)
	}
	return fmt.Sprintf("for k in %s; do aws cloudtrail lookup-events --region %s --lookup-attributes AttributeKey=AccessKeyId,AttributeValue=$k; done",
		strings.Join(f.AccessKeys, " "), f.Region)
}

// RevokeCommand is the containment step as a command: the inline policy the IAM console's
// "Revoke active sessions" attaches, denying every session of the role issued before now.
// https://docs.aws.amazon.com/IAM/latest/UserGuide/id_roles_use_revoke-sessions.html
func RevokeCommand(role string, now time.Time) string {
	return fmt.Sprintf(`aws iam put-role-policy --role-name %s --policy-name AWSRevokeOlderSessions --policy-document '{"Version":"2012-10-17","Statement":[{"Effect":"Deny","Action":"*","Resource":"*","Condition":{"DateLessThan":{"aws:TokenIssueTime":"%s"}}}]}'`,
		role, now.UTC().Format(time.RFC3339))
}

// Tags on the role's resource that Security Hub automation rules can match (their
// criteria have no address or ProductFields filter, but match resource tags with
// CONTAINS): every source address and every identity that assumed the role, each between
// commas, so that ",203.0.113." matches that /24 and ",ARN," that principal exactly.
// https://docs.aws.amazon.com/securityhub/latest/userguide/automation-rules.html
const (
	TagSourceIPs = "outsider/SourceIPs"
	TagAssumedBy = "outsider/AssumedBy"
	maxTagValue  = 256
)

func suppressionTags(f detect.Finding) map[string]string {
	tags := map[string]string{}
	if ips := f.SourceIPs(); len(ips) > 0 {
		tags[TagSourceIPs] = commaList(ips)
	}
	var by []string
	if f.IssuedBy != "" {
		by = append(by, f.IssuedBy)
	}
	for _, a := range f.AssumedBy {
		if !slices.Contains(by, a.By) {
			by = append(by, a.By)
		}
	}
	if len(by) > 0 {
		tags[TagAssumedBy] = commaList(by)
	}
	if len(tags) == 0 {
		return nil
	}
	return tags
}

// commaList is ",a,b,", cut at a whole item below Security Hub's 256 characters.
func commaList(items []string) string {
	out := ","
	for _, it := range items {
		if len(out)+len(it)+1 > maxTagValue {
			break
		}
		out += it + ","
	}
	return out
}

func resources(f detect.Finding) []types.Resource {
	var rs []types.Resource
	part := aws.String(awsid.Or(f.Partition))
	if f.FunctionARN != "" {
		rs = append(rs, types.Resource{
			Type: aws.String("AwsLambdaFunction"), Id: aws.String(f.FunctionARN), Partition: types.Partition(*part), Region: aws.String(f.Region),
			Details: &types.ResourceDetails{AwsLambdaFunction: &types.AwsLambdaFunctionDetails{
				FunctionName: aws.String(f.Function), Role: aws.String(f.RoleARN),
			}},
		})
	}
	rs = append(rs, types.Resource{
		Type: aws.String("AwsIamRole"), Id: aws.String(f.RoleARN), Partition: types.Partition(*part), Region: aws.String(f.Region),
		Details: &types.ResourceDetails{AwsIamRole: &types.AwsIamRoleDetails{RoleName: aws.String(f.Role)}},
		Tags:    suppressionTags(f),
	})
	if f.ChainedRoleARN != "" {
		// The role whose key the function's session obtained: the key used is its session's.
		rs = append(rs, types.Resource{
			Type: aws.String("AwsIamRole"), Id: aws.String(f.ChainedRoleARN), Partition: types.Partition(*part), Region: aws.String(f.Region),
			Details: &types.ResourceDetails{AwsIamRole: &types.AwsIamRoleDetails{RoleName: aws.String(awsid.RoleName(f.ChainedRoleARN))}},
			Tags:    map[string]string{"outsider/relation": "chained-role"},
		})
	}
	for _, k := range f.AccessKeys {
		rs = append(rs, types.Resource{
			Type: aws.String("AwsIamAccessKey"), Id: aws.String("AWS::IAM::AccessKey:" + k), Partition: types.Partition(*part), Region: aws.String(f.Region),
			Details: &types.ResourceDetails{AwsIamAccessKey: &types.AwsIamAccessKeyDetails{
				AccessKeyId: aws.String(k), AccountId: aws.String(f.Account),
				PrincipalType: aws.String("AssumedRole"), PrincipalName: aws.String(f.Role + "/" + f.Session),
			}},
		})
		if len(rs) >= 32 { // Security Hub takes at most 32 resources
			break
		}
	}
	return rs
}

func action(f detect.Finding) *types.Action {
	call := &types.AwsApiCallAction{
		CallerType: aws.String("remoteip"),
		FirstSeen:  aws.String(ts(f.FirstSeen)),
		LastSeen:   aws.String(ts(f.LastSeen)),
	}
	if len(f.Calls) > 0 {
		c := f.Calls[0]
		call.Api = aws.String(c.Name)
		call.ServiceName = aws.String(c.Service)
	}
	if len(f.Sources) > 0 {
		s := f.Sources[0]
		rip := &types.ActionRemoteIpDetails{}
		if a, err := netip.ParseAddr(s.IP); err == nil && a.Is4() {
			rip.IpAddressV4 = aws.String(s.IP)
		}
		if s.ASN != 0 {
			rip.Organization = &types.IpOrganizationDetails{Asn: aws.Int32(int32(s.ASN)), AsnOrg: aws.String(s.Org)}
		}
		if rip.IpAddressV4 != nil || rip.Organization != nil {
			call.RemoteIpDetails = rip
		}
	}
	return &types.Action{ActionType: aws.String("AWS_API_CALL"), AwsApiCallAction: call}
}

// productFields carries what has no ASFF field: the signals, counts and bounded lists.
func productFields(f detect.Finding) map[string]string {
	m := map[string]string{
		"outsider/Title":             f.Title.Code(),
		"outsider/Signals":           strings.Join(f.Signals, ","),
		"outsider/Count":             strconv.Itoa(f.Count),
		"outsider/CountIsLowerBound": map[bool]string{true: "true"}[f.Saturated],
		"outsider/FailedCount":       strconv.Itoa(f.Failed),
		"outsider/FirstSeen":         ts(f.FirstSeen),
		"outsider/LastSeen":          ts(f.LastSeen),
		"outsider/Account":           f.Account,
		"outsider/Region":            f.Region,
		"outsider/Role":              f.Role,
		"outsider/RoleArn":           f.RoleARN,
		"outsider/ChainedRoleArn":    f.ChainedRoleARN,
		"outsider/Session":           f.Session,
		"outsider/AccessKeys":        strings.Join(f.AccessKeys, ","),
		"outsider/SourceIPs":         strings.Join(f.SourceIPs(), ","),
		"outsider/ApiCalls":          strings.Join(f.CallNames(), ","),
		"outsider/UserAgents":        strings.Join(f.UserAgents, " | "),
		"outsider/LookupEvents":      clip(LookupAllCommand(f), maxFieldValue),
	}
	if f.Function != "" {
		m["outsider/Function"] = f.Function
		m["outsider/FunctionArn"] = f.FunctionARN
	}
	if f.IssuedBy != "" {
		m["outsider/SessionIssuedBy"] = f.IssuedBy
	}
	if !f.KeysExpire.IsZero() {
		m["outsider/KeysExpire"] = ts(f.KeysExpire)
	}
	if f.Drill {
		m["outsider/Drill"] = "true"
	}
	m["outsider/RoleAttached"] = f.Attached
	m["outsider/RoleAttachedDetail"] = f.AttachedDetail
	var assumed []string
	for _, a := range f.AssumedBy {
		assumed = append(assumed, fmt.Sprintf("%s at %s from %s", a.By, ts(a.At), a.SourceIP))
	}
	m["outsider/RoleAssumedBy"] = strings.Join(assumed, "; ")
	if f.InsideSeen != nil {
		m["outsider/KeyUsedInsideAt"] = ts(f.InsideSeen.At)
		m["outsider/KeyUsedInsideFrom"] = f.InsideSeen.IP
	}
	var asns []string
	for _, s := range f.Sources {
		if s.ASN != 0 {
			asns = append(asns, fmt.Sprintf("%s=AS%d %s", s.IP, s.ASN, s.Org))
		}
	}
	if len(asns) > 0 {
		m["outsider/SourceASNs"] = strings.Join(asns, "; ")
	}
	var errs []string
	for _, c := range f.Calls {
		if c.Errors > 0 {
			errs = append(errs, fmt.Sprintf("%s:%s=%s(%d)", strings.TrimSuffix(c.Service, ".amazonaws.com"), c.Name, c.LastErr, c.Errors))
		}
	}
	if len(errs) > 0 {
		m["outsider/FailedCalls"] = strings.Join(errs, ",")
	}
	for k, v := range m {
		if v == "" {
			delete(m, k)
		} else {
			m[k] = clip(v, maxFieldValue)
		}
	}
	return m
}

func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	n -= len("...")
	for n > 0 && s[n]&0xC0 == 0x80 { // cut on a rune boundary
		n--
	}
	return s[:n] + "..."
}

// JSON renders a finding as ASFF JSON, the way BatchImportFindings and `aws securityhub
// get-findings` show it: absent fields left out, keys sorted.
//
// The SDK's finding type is hundreds of fields, nearly all nil: rendering it to JSON and
// pruning the nulls (jsonSlow, kept as the reference the tests hold this to, byte for byte)
// was a hundred kilobytes of garbage a finding, and a replay renders every finding it
// prints. The fields are walked once instead, the empty ones skipped.
func JSON(f types.AwsSecurityFinding) ([]byte, error) {
	e := encoder{buf: make([]byte, 0, 4096)}
	if err := e.value(reflect.ValueOf(f)); err != nil {
		return nil, err
	}
	if len(e.buf) == 0 {
		return []byte("{}"), nil // nothing at all: the pruned value is an empty object
	}
	return e.buf, nil
}

// jsonSlow renders what JSON renders through encoding, decoding and pruning: the
// reference.
func jsonSlow(v any) ([]byte, error) {
	raw, err := gojson.Marshal(v)
	if err != nil {
		return nil, err
	}
	var tree any
	if err := gojson.Unmarshal(raw, &tree); err != nil {
		return nil, err
	}
	tree, _ = prune(tree)
	return gojson.Marshal(tree)
}

// encoder appends a value's JSON with the empty parts left out: nil pointers, slices,
// maps and interfaces, empty strings, and objects and arrays left empty. Keys are sorted.
// Numbers are written as JSON decoding and encoding them again writes them (as float64).
type encoder struct{ buf []byte }

// value appends v and reports nothing appended when it is empty.
func (e *encoder) value(v reflect.Value) error {
	if rendersItself(v.Type()) {
		return e.slow(v) // a type that renders itself: what it renders, pruned
	}
	switch v.Kind() {
	case reflect.Pointer, reflect.Interface:
		if v.IsNil() {
			return nil
		}
		return e.value(v.Elem())
	case reflect.String:
		if v.Len() > 0 {
			e.str(v.String())
		}
	case reflect.Bool:
		e.buf = strconv.AppendBool(e.buf, v.Bool())
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return e.float(float64(v.Int()))
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return e.float(float64(v.Uint()))
	case reflect.Float32, reflect.Float64:
		return e.float(v.Float())
	case reflect.Struct:
		fields := structFields(v.Type())
		start := len(e.buf)
		e.buf = append(e.buf, '{')
		for _, f := range fields {
			if err := e.member(f.name, v.FieldByIndex(f.index)); err != nil {
				return err
			}
		}
		e.close(start, '}')
	case reflect.Map:
		if m, ok := v.Interface().(map[string]string); ok {
			e.stringMap(m) // ProductFields, UserDefinedFields: no value copied out by reflection
			return nil
		}
		if v.Type().Key().Kind() != reflect.String {
			return e.slow(v)
		}
		keys := make([]string, 0, v.Len())
		for _, k := range v.MapKeys() {
			keys = append(keys, k.String())
		}
		sort.Strings(keys)
		start := len(e.buf)
		e.buf = append(e.buf, '{')
		for _, k := range keys {
			if err := e.member(k, v.MapIndex(reflect.ValueOf(k).Convert(v.Type().Key()))); err != nil {
				return err
			}
		}
		e.close(start, '}')
	case reflect.Slice, reflect.Array:
		if v.Type().Elem().Kind() == reflect.Uint8 {
			return e.slow(v) // bytes are base64: none in a finding
		}
		start := len(e.buf)
		e.buf = append(e.buf, '[')
		for i := range v.Len() {
			at := len(e.buf)
			if at-start > 1 {
				e.buf = append(e.buf, ',')
			}
			if err := e.value(v.Index(i)); err != nil {
				return err
			}
			if len(e.buf) == at+1 && at-start > 1 {
				e.buf = e.buf[:at] // an empty element: its comma goes too
			}
		}
		e.close(start, ']')
	default:
		return e.slow(v)
	}
	return nil
}

// stringMap appends a map of strings as value appends any map: keys sorted, empty values
// left out, an empty object taken back.
func (e *encoder) stringMap(m map[string]string) {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	start := len(e.buf)
	e.buf = append(e.buf, '{')
	for _, k := range keys {
		if v := m[k]; v != "" {
			if e.buf[len(e.buf)-1] != '{' {
				e.buf = append(e.buf, ',')
			}
			e.str(k)
			e.buf = append(e.buf, ':')
			e.str(v)
		}
	}
	e.close(start, '}')
}

// member appends "name":value, or nothing when the value is empty.
func (e *encoder) member(name string, v reflect.Value) error {
	switch v.Kind() {
	case reflect.Pointer, reflect.Interface, reflect.Map, reflect.Slice:
		// Nearly every field of a finding: nil renders nothing (a type that renders
		// itself renders nil as null, pruned).
		if v.IsNil() {
			return nil
		}
	case reflect.String:
		if v.Len() == 0 && !rendersItself(v.Type()) {
			return nil
		}
	}
	at := len(e.buf)
	if e.buf[len(e.buf)-1] != '{' {
		e.buf = append(e.buf, ',')
	}
	e.str(name)
	e.buf = append(e.buf, ':')
	mark := len(e.buf)
	if err := e.value(v); err != nil {
		return err
	}
	if len(e.buf) == mark {
		e.buf = e.buf[:at]
	}
	return nil
}

// close ends an object or array opened at start; an empty one is taken back.
func (e *encoder) close(start int, c byte) {
	if len(e.buf) == start+1 {
		e.buf = e.buf[:start]
		return
	}
	e.buf = append(e.buf, c)
}

func (e *encoder) float(f float64) error {
	b, err := gojson.Marshal(f)
	if err != nil {
		return err
	}
	e.buf = append(e.buf, b...)
	return nil
}

// str appends a JSON string as encoding/json writes it: HTML characters escaped, invalid
// UTF-8 replaced. Plain printable ASCII, nearly every string, is copied as it is.
func (e *encoder) str(s string) {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c >= 0x7f || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			// Written, read and written again, as the reference does: invalid bytes
			// become U+FFFD, one each, and the second writing leaves it unescaped.
			b, _ := gojson.Marshal(s)
			var u string
			_ = gojson.Unmarshal(b, &u)
			b, _ = gojson.Marshal(u)
			e.buf = append(e.buf, b...)
			return
		}
	}
	e.buf = append(e.buf, '"')
	e.buf = append(e.buf, s...)
	e.buf = append(e.buf, '"')
}

// slow appends what the reference renders for a value this encoder does not walk.
func (e *encoder) slow(v reflect.Value) error {
	if !v.CanInterface() {
		return nil
	}
	b, err := jsonSlow(v.Interface())
	if err != nil {
		return err
	}
	if string(b) != "null" && string(b) != "{}" && string(b) != "[]" && string(b) != `""` {
		e.buf = append(e.buf, b...)
	}
	return nil
}

var marshalerType = reflect.TypeFor[gojson.Marshaler]()

var selfRendering sync.Map // reflect.Type → bool

// rendersItself reports whether t or *t has a MarshalJSON method; asked of every field
// of a finding (hundreds), and a method set's search each time was most of rendering one.
func rendersItself(t reflect.Type) bool {
	if b, ok := selfRendering.Load(t); ok {
		return b.(bool)
	}
	b := t.Implements(marshalerType) || reflect.PointerTo(t).Implements(marshalerType)
	selfRendering.Store(t, b)
	return b
}

// field is an exported field of a struct, as JSON names it.
type field struct {
	name  string
	index []int
}

var fieldCache sync.Map // reflect.Type → []field, sorted by name

// structFields lists a struct type's exported fields in key order, those of embedded
// structs promoted (the SDK's types embed one with none).
func structFields(t reflect.Type) []field {
	if fs, ok := fieldCache.Load(t); ok {
		return fs.([]field)
	}
	var fs []field
	var walk func(t reflect.Type, index []int)
	walk = func(t reflect.Type, index []int) {
		for i := range t.NumField() {
			sf := t.Field(i)
			at := append(slices.Clone(index), i)
			if sf.Anonymous && sf.Type.Kind() == reflect.Struct {
				walk(sf.Type, at)
				continue
			}
			if !sf.IsExported() {
				continue
			}
			name := sf.Name
			if tag, _, _ := strings.Cut(sf.Tag.Get("json"), ","); tag == "-" {
				continue
			} else if tag != "" {
				name = tag
			}
			fs = append(fs, field{name: name, index: at})
		}
	}
	walk(t, nil)
	slices.SortStableFunc(fs, func(a, b field) int { return strings.Compare(a.name, b.name) })
	fieldCache.Store(t, fs)
	return fs
}

// prune drops nulls, empty strings, empty objects and empty arrays.
func prune(v any) (any, bool) {
	switch x := v.(type) {
	case nil:
		return nil, false
	case string:
		return x, x != ""
	case map[string]any:
		keys := make([]string, 0, len(x))
		for k := range x {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			if nv, ok := prune(x[k]); ok {
				x[k] = nv
			} else {
				delete(x, k)
			}
		}
		return x, len(x) > 0
	case []any:
		out := x[:0]
		for _, e := range x {
			if nv, ok := prune(e); ok {
				out = append(out, nv)
			}
		}
		return out, len(out) > 0
	}
	return v, true
}
