package detect

import (
	"context"
	"encoding/json"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/outsider-sec/outsider/pkg/cloudtrail"
)

// The service principals whose trust makes a role a Lambda execution role, and the one
// that assumes it. Lambda@Edge functions assume their role through edgelambda.
// https://docs.aws.amazon.com/lambda/latest/dg/lambda-intro-execution-role.html
const lambdaPrincipal = "lambda.amazonaws.com"

var lambdaPrincipals = []string{lambdaPrincipal, "edgelambda.amazonaws.com"}

// The user agent of the AWS SDKs inside a Lambda function carries the execution
// environment (AWS_EXECUTION_ENV), e.g. "exec-env/AWS_Lambda_java21".
// https://docs.aws.amazon.com/lambda/latest/dg/configuration-envvars.html#configuration-envvars-runtime
const lambdaExecEnv = "exec-env/AWS_Lambda_"

// issued is who handed out an access key (sts:AssumeRole).
type issued struct {
	Lambda   bool      `json:"lambda"`
	By       string    `json:"by"` // the identity that assumed the role
	Role     string    `json:"role"`
	Account  string    `json:"account"`
	Region   string    `json:"region"`
	At       time.Time `json:"at"`
	SourceIP string    `json:"sourceIp,omitempty"`
}

// maxAssumers bounds the assumptions of a role kept for the investigation.
const maxAssumers = 10

type fnRole struct {
	Role string    `json:"role"`
	At   time.Time `json:"at"`
}

type lastSeen struct {
	Seen   time.Time `json:"seen"`
	Region string    `json:"region,omitempty"`
}

// learn takes from a record what it teaches about Lambda roles, functions and keys
// (DESIGN §2, sources 1–3; the inventory is source 4).
func (d *Detector) learn(ctx context.Context, r *cloudtrail.Record, where Where) error {
	id := &r.Identity
	switch {
	case r.ErrorCode != "":
		// A failed call creates nothing and issues nothing.
	case r.Source == "sts.amazonaws.com" && r.Name == "AssumeRole":
		return d.learnAssumeRole(ctx, r)
	case r.Source == "lambda.amazonaws.com" &&
		(strings.HasPrefix(r.Name, "CreateFunction") || strings.HasPrefix(r.Name, "UpdateFunctionConfiguration")):
		if r.Request.Role == "" || r.Request.FunctionName == "" {
			return nil
		}
		fn, account, region := functionRef(r.Request.FunctionName, r.Account(), r.Region)
		roleAcct := cloudtrail.AccountFromARN(r.Request.Role)
		if roleAcct == "" {
			roleAcct = account
		}
		role := cloudtrail.RoleNameFromARN(r.Request.Role)
		// The role a function was last given: a later change answers "is the role (still)
		// attached?" with "no longer".
		if err := d.putJSON(ctx, fact{keyFnRole, roleAcct, fn, ""}.String(), fnRole{Role: role, At: r.Time}, time.Time{}); err != nil {
			return err
		}
		return d.learnFunction(ctx, roleAcct, role, fn, region, r.Time)
	case r.Source == "iam.amazonaws.com" && (r.Name == "CreateRole" || r.Name == "UpdateAssumeRolePolicy"):
		if r.Request.RoleName == "" || !trustsLambda(r.Request.TrustPolicy) {
			return nil
		}
		account := cloudtrail.AccountFromARN(r.ResponseRoleARN)
		if account == "" {
			account = r.Account()
		}
		return d.learnRole(ctx, account, r.Request.RoleName, r.Time)
	}
	// A function's own call, from inside: its role is a Lambda role and its session name
	// is the function's name.
	if id.Type == cloudtrail.IdentityAssumedRole && id.Temporary() && where != Outside &&
		id.InvokedBy == "" && strings.Contains(r.UserAgent, lambdaExecEnv) {
		if sess := id.SessionName(); sess != "" {
			// The function's region is where its address is, not awsRegion: a function
			// calls IAM or STS in us-east-1 from wherever it runs.
			region := ""
			if rl, ok := d.ranges.(RegionLookup); ok && where == AWS {
				if region = rl.Region(r.Addr); region == "GLOBAL" {
					region = ""
				}
			}
			return d.learnFunction(ctx, roleAccount(id), id.RoleName(), sess, region, r.Time)
		}
	}
	return nil
}

func (d *Detector) learnAssumeRole(ctx context.Context, r *cloudtrail.Record) error {
	roleARN := r.Request.RoleARN
	role := cloudtrail.RoleNameFromARN(roleARN)
	account := cloudtrail.AccountFromARN(roleARN)
	if role == "" || account == "" {
		return nil
	}
	if r.Identity.InvokedBy == lambdaPrincipal || r.SourceIP == lambdaPrincipal && r.Identity.Type == cloudtrail.IdentityAWSService {
		if err := d.learnRole(ctx, account, role, r.Time); err != nil {
			return err
		}
		if r.IssuedKeyID == "" {
			return nil
		}
		return d.putJSON(ctx, keyIssued+r.IssuedKeyID, issued{
			Lambda: true, By: lambdaPrincipal, Role: role, Account: account, Region: r.Region, At: r.Time,
		}, r.Time.Add(d.cfg.Training))
	}
	// Someone else assumed a role: that matters only for Lambda roles (title 1).
	if r.IssuedKeyID == "" {
		return nil
	}
	lambdaRole, err := d.isLambdaRole(ctx, account, role, r.Time)
	if err != nil || !lambdaRole {
		return err
	}
	by := r.Identity.ARN
	if by == "" {
		by = r.Identity.InvokedBy
	}
	if by == "" {
		by = r.Identity.Type
	}
	if err := d.putJSON(ctx, keyIssued+r.IssuedKeyID, issued{
		By: by, Role: role, Account: account, Region: r.Region, At: r.Time, SourceIP: r.SourceIP,
	}, r.Time.Add(d.cfg.Training)); err != nil {
		return err
	}
	// Remember who assumes a Lambda role (the card's second question), newest kept.
	key := fact{keyAssumers, account, role, ""}.String()
	var list []Assumption
	if _, err := d.getJSON(ctx, key, r.Time, &list); err != nil {
		return err
	}
	list = append(list, Assumption{By: by, At: r.Time, SourceIP: r.SourceIP, Key: r.IssuedKeyID})
	if len(list) > maxAssumers {
		list = list[len(list)-maxAssumers:]
	}
	return d.putJSON(ctx, key, list, r.Time.Add(d.cfg.Training))
}

func (d *Detector) learnRole(ctx context.Context, account, role string, t time.Time) error {
	k := roleKey{account, role}
	if f, ok := d.roles[k]; !ok || !f.lambda || t.After(f.lastSeen) {
		d.roles[k.clone()] = roleFact{lambda: true, lastSeen: t}
	}
	return d.touch(ctx, fact{keyRole, account, role, ""}, t, lastSeen{Seen: t})
}

func (d *Detector) learnFunction(ctx context.Context, account, role, fn, region string, t time.Time) error {
	if account == "" || role == "" || fn == "" {
		return nil
	}
	if err := d.learnRole(ctx, account, role, t); err != nil {
		return err
	}
	k := fnKey{account, role, fn}
	if seen, ok := d.fns[k]; !ok || t.After(seen) {
		if !ok {
			k = fnKey{strings.Clone(account), strings.Clone(role), strings.Clone(fn)}
		}
		d.fns[k] = t
	}
	if region != "" && d.fnRegion[k] != region {
		d.fnRegion[k] = strings.Clone(region)
	}
	return d.touch(ctx, fact{keyFunction, account, role, fn}, t, lastSeen{Seen: t, Region: region})
}

// isLambdaRole reports whether a role was a Lambda execution role within the training
// period before t. Answers are cached: the hot path asks the store at most once per role
// every negativeTTL.
func (d *Detector) isLambdaRole(ctx context.Context, account, role string, t time.Time) (bool, error) {
	if role == "" {
		return false, nil
	}
	if d.inv.hasRole(account, role) {
		return true, nil
	}
	k := roleKey{account, role}
	f, ok := d.roles[k]
	if ok && f.lambda && f.lastSeen.After(t.Add(-d.cfg.Training)) {
		return true, nil
	}
	if ok && !f.lambda && d.now().Sub(f.checked) < negativeTTL {
		return false, nil
	}
	var v lastSeen
	found, err := d.getJSON(ctx, fact{keyRole, account, role, ""}.String(), t, &v)
	if err != nil {
		return false, err
	}
	if found {
		if v.Seen.After(f.lastSeen) {
			d.roles[k.clone()] = roleFact{lambda: true, lastSeen: v.Seen}
		}
		return true, nil
	}
	d.roles[k.clone()] = roleFact{checked: d.now()}
	return false, nil
}

// knownFunction reports whether this detector learned fn as a function of the role within
// the training period (memory only; functionOf asks the store too).
func (d *Detector) knownFunction(account, role, fn string, t time.Time) bool {
	seen, ok := d.fns[fnKey{account, role, fn}]
	return ok && seen.After(t.Add(-d.cfg.Training))
}

// functionOf reports whether fn was a function of the role within the training period,
// and the function's region when known.
func (d *Detector) functionOf(ctx context.Context, account, role, fn string, t time.Time) (bool, string, error) {
	if f, ok := d.inv.function(account, role, fn); ok {
		return true, f.Region, nil
	}
	var v lastSeen
	found, err := d.getJSON(ctx, fact{keyFunction, account, role, fn}.String(), t, &v)
	return found, v.Region, err
}

// functionRef splits a functionName parameter (a name, a partial or a full ARN) into the
// name, its account and its region.
// https://docs.aws.amazon.com/lambda/latest/api/API_CreateFunction.html#lambda-CreateFunction-request-FunctionName
func functionRef(s, account, region string) (name, acct, reg string) {
	if !strings.HasPrefix(s, "arn:") {
		// "NAME" or "ACCOUNT:function:NAME"
		if parts := strings.Split(s, ":"); len(parts) >= 3 && parts[1] == "function" {
			return parts[2], parts[0], region
		}
		return s, account, region
	}
	// arn:aws:lambda:REGION:ACCOUNT:function:NAME[:QUALIFIER]
	parts := strings.Split(s, ":")
	if len(parts) >= 7 {
		return parts[6], parts[4], parts[3]
	}
	return s, account, region
}

// trustsLambda reports whether a trust policy lets Lambda assume the role. The document is
// JSON, sometimes URL-encoded (as IAM returns it).
func trustsLambda(doc string) bool {
	if doc == "" {
		return false
	}
	var p struct {
		Statement json.RawMessage
	}
	if err := json.Unmarshal([]byte(doc), &p); err != nil {
		dec, uerr := url.QueryUnescape(doc)
		if uerr != nil || json.Unmarshal([]byte(dec), &p) != nil {
			return false
		}
	}
	type statement struct {
		Effect    string
		Action    json.RawMessage
		Principal json.RawMessage
	}
	var stmts []statement
	if json.Unmarshal(p.Statement, &stmts) != nil {
		var one statement
		if json.Unmarshal(p.Statement, &one) != nil {
			return false
		}
		stmts = []statement{one}
	}
	for _, s := range stmts {
		if s.Effect != "Allow" || !slices.ContainsFunc(stringsOf(s.Action), func(a string) bool {
			return strings.EqualFold(a, "sts:AssumeRole") || a == "sts:*" || a == "*"
		}) {
			continue
		}
		var pr struct{ Service json.RawMessage }
		if json.Unmarshal(s.Principal, &pr) != nil {
			continue
		}
		for _, svc := range stringsOf(pr.Service) {
			for _, lp := range lambdaPrincipals {
				if svc == lp {
					return true
				}
			}
		}
	}
	return false
}

// stringsOf reads a JSON string or array of strings.
func stringsOf(b json.RawMessage) []string {
	var one string
	if json.Unmarshal(b, &one) == nil {
		return []string{one}
	}
	var many []string
	_ = json.Unmarshal(b, &many)
	return many
}
