package detect

import (
	"context"
	"encoding/json"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/outsider-sec/outsider/pkg/awsid"
	"github.com/outsider-sec/outsider/pkg/cloudtrail"
)

// The service principals whose trust makes a role a Lambda execution role, and that assume
// it. Lambda@Edge functions assume their role through edgelambda.
// https://docs.aws.amazon.com/lambda/latest/dg/lambda-intro-execution-role.html
// https://docs.aws.amazon.com/AmazonCloudFront/latest/DeveloperGuide/lambda-edge-permissions.html
const lambdaPrincipal = "lambda.amazonaws.com"

var lambdaPrincipals = []string{lambdaPrincipal, "edgelambda.amazonaws.com"}

// The user agent of the AWS SDKs inside a Lambda function carries the execution
// environment (AWS_EXECUTION_ENV), e.g. "exec-env/AWS_Lambda_java21".
// https://docs.aws.amazon.com/lambda/latest/dg/configuration-envvars.html#configuration-envvars-runtime
const lambdaExecEnv = "exec-env/AWS_Lambda_"

// defaultKeyLife is how long a key counts when its AssumeRole record does not say: the
// longest role session (12 hours).
// https://docs.aws.amazon.com/STS/latest/APIReference/API_AssumeRole.html
const defaultKeyLife = 12 * time.Hour

// issued is who handed out an access key, kept from its issue until it expires.
type issued struct {
	Lambda   bool      `json:"lambda,omitempty"`
	By       string    `json:"by,omitempty"`     // the identity that obtained it, when not Lambda
	Person   bool      `json:"person,omitempty"` // obtained by a person: its sessions are people's
	Role     string    `json:"role"`
	Account  string    `json:"account"`
	Region   string    `json:"region"`
	At       time.Time `json:"at"`
	Expires  time.Time `json:"expires"`
	SourceIP string    `json:"sourceIp,omitempty"`
	// Function: the key was obtained with this function's token (a chained token).
	Function *FunctionRef `json:"function,omitempty"`

	owner bool // only the role owner's copy says so: the caller's may still come
}

// FunctionRef names a function: its ARN's parts, and its own execution role.
type FunctionRef struct {
	Account string `json:"account"`
	Region  string `json:"region,omitempty"`
	Name    string `json:"name"`
	Role    string `json:"role"`
}

// maxAssumers bounds the assumptions of a role kept for the investigation.
const maxAssumers = 10

type fnRole struct {
	Role string    `json:"role"`
	At   time.Time `json:"at"`
}

// learn takes from a successful record what it teaches about Lambda roles, functions and
// keys (sources 1 and 2 of the package documentation; source 3 is in inside, 4 is the
// inventory).
func (d *Detector) learn(ctx context.Context, r *cloudtrail.Record, c *caller) error {
	switch {
	case r.Source == "sts.amazonaws.com" && strings.HasPrefix(r.Name, "AssumeRole"):
		return d.learnAssumeRole(ctx, r, c)
	case r.Source == "lambda.amazonaws.com" &&
		(strings.HasPrefix(r.Name, "CreateFunction") || strings.HasPrefix(r.Name, "UpdateFunctionConfiguration")):
		if r.Request.Role == "" || r.Request.FunctionName == "" {
			return nil // a configuration change without a role changes no role
		}
		fn, account, region := functionRef(r.Request.FunctionName, r.Account(), r.Region)
		roleAcct := awsid.Account(r.Request.Role)
		if roleAcct == "" {
			roleAcct = account
		}
		role := awsid.RoleName(r.Request.Role)
		if role == "" {
			return nil
		}
		// The role a function was last given: a later change answers "is the role (still)
		// attached?" with "no longer".
		if err := d.putJSON(ctx, fact{keyFnRole, roleAcct, fn, ""}.String(), fnRole{Role: role, At: r.Time}, time.Time{}); err != nil {
			return err
		}
		d.learnFunction(roleAcct, role, fn, region, r.Time)
	case r.Source == "iam.amazonaws.com" && (r.Name == "CreateRole" || r.Name == "UpdateAssumeRolePolicy"):
		if r.Request.RoleName == "" || !trustsLambda(r.Request.TrustPolicy) {
			return nil
		}
		account := awsid.Account(r.ResponseRoleARN)
		if account == "" {
			account = r.Account()
		}
		d.learnRole(account, r.Request.RoleName, r.Time)
	}
	return nil
}

// learnAssumeRole: c is the caller when a role session obtained the key.
func (d *Detector) learnAssumeRole(ctx context.Context, r *cloudtrail.Record, c *caller) error {
	roleARN := r.Request.RoleARN
	role := awsid.RoleName(roleARN)
	account := awsid.Account(roleARN)
	if role == "" || account == "" {
		return nil
	}
	expires := r.IssuedKeyExpires
	if expires.IsZero() || expires.Before(r.Time) {
		expires = r.Time.Add(defaultKeyLife)
	}
	id := &r.Identity
	byLambda := slices.Contains(lambdaPrincipals, id.InvokedBy) ||
		id.Type == cloudtrail.IdentityAWSService && slices.Contains(lambdaPrincipals, r.SourceIP)
	if byLambda && r.Name == "AssumeRole" {
		d.learnRole(account, role, r.Time)
		if r.IssuedKeyID == "" {
			return nil
		}
		is := &issued{Lambda: true, By: lambdaPrincipal, Role: role, Account: account, Region: r.Region, At: r.Time, Expires: expires}
		if d.sharedCaller(r) {
			d.shared = is
		}
		return d.putIssued(ctx, r.IssuedKeyID, is)
	}
	if r.IssuedKeyID == "" {
		return nil
	}
	// Someone else obtained a key: remember who, whether or not the role is known as a
	// Lambda role yet, until the key expires.
	by := id.ARN
	if by == "" {
		by = id.InvokedBy
	}
	if by == "" {
		by = id.Type
	}
	is := &issued{By: by, Role: role, Account: account, Region: r.Region, At: r.Time, Expires: expires, SourceIP: r.SourceIP}
	switch {
	case r.Name == "AssumeRoleWithSAML" || personType(id.Type):
		is.Person = true
	case r.Name == "AssumeRoleWithWebIdentity":
		// CI systems and Kubernetes service accounts: not people.
	case c != nil:
		s, err := d.resolve(ctx, c, id.AccessKeyID, r.Time)
		if err != nil {
			return err
		}
		switch s.kind {
		case sessFunction, sessChained:
			if s.fn != "" || s.kind == sessChained {
				is.Function = &FunctionRef{Account: s.fnAccount, Region: s.region, Name: s.fn, Role: s.fnRole}
			} else {
				is.Function = &FunctionRef{Account: s.account, Region: s.region, Role: s.role}
			}
		default:
			// A person's session of a Lambda execution role passes nothing on: what it
			// obtains is no person's (DESIGN §4).
			is.Person = s.person && !s.lambdaRole
		}
	}
	if id.Type == cloudtrail.IdentityAWSAccount {
		// The role owner's copy of a cross-account AssumeRole (the caller shown as its
		// account): it adds to what the caller's own copy says, never replaces it,
		// whichever arrives first, so it is kept apart.
		if err := d.putJSON(ctx, keyIssuedBy+r.IssuedKeyID, is, is.Expires); err != nil {
			return err
		}
		if cur := d.issuedMemo[r.IssuedKeyID]; cur == nil || cur.owner {
			o := *is
			o.owner = true
			k := strings.Clone(r.IssuedKeyID)
			d.issuedMemo[k] = &o
			d.unknownKeys = append(d.unknownKeys, k)
		}
	} else if err := d.putIssued(ctx, r.IssuedKeyID, is); err != nil {
		return err
	}
	if d.sharedCaller(r) {
		if id.Type != cloudtrail.IdentityAWSAccount {
			d.shared = is
		}
		return nil // who assumes the role is its owner's shard's to keep
	}
	return d.noteAssumer(ctx, r, account, role, by)
}

// noteAssumer remembers who assumed a Lambda role (the second investigative question),
// newest kept.
func (d *Detector) noteAssumer(ctx context.Context, r *cloudtrail.Record, account, role, by string) error {
	lambdaRole, err := d.isLambdaRole(ctx, account, role, r.Time)
	if err != nil || !lambdaRole {
		return err
	}
	key := fact{keyAssumers, account, role, ""}.String()
	var list []Assumption
	if _, err := d.getJSON(ctx, key, time.Time{}, &list); err != nil {
		return err
	}
	a := Assumption{By: by, At: r.Time, SourceIP: r.SourceIP, Key: r.IssuedKeyID}
	if slices.Contains(list, a) {
		return nil
	}
	list = append(list, a)
	slices.SortFunc(list, func(a, b Assumption) int { return a.At.Compare(b.At) })
	if len(list) > maxAssumers {
		list = list[len(list)-maxAssumers:]
	}
	return d.putJSON(ctx, key, list, list[len(list)-1].At.Add(d.cfg.Training))
}

func (d *Detector) putIssued(ctx context.Context, key string, is *issued) error {
	key, c := d.remember(key, is)
	if d.forget > 0 && d.owns == nil {
		// A replay's one detector (SetForget; no other shard reads the store meanwhile):
		// what it knows, issuedMemo answers until the next flush, which writes it unless
		// it expired by then. A dense history's keys live hours, its flushes come days
		// of event time apart: most issuers are never encoded nor copied into the store
		// (which would drop them unwritten at its commit).
		d.unwritten = append(d.unwritten, heldIssuer{key, c})
		if len(d.unwritten) >= maxFacts/2 {
			return d.writeIssuers(ctx, true)
		}
		return nil
	}
	return d.putJSON(ctx, keyIssued+key, c, c.Expires)
}

// heldIssuer is who issued a key, to be written at the next flush (putIssued).
type heldIssuer struct {
	key string
	is  *issued
}

// writeIssuers writes the issuers held, but those that expired before the detector's
// horizon (SetForget) and, unless all, those it holds back (heldBack) until a later flush.
func (d *Detector) writeIssuers(ctx context.Context, all bool) error {
	kept := d.unwritten[:0]
	for i, h := range d.unwritten {
		switch {
		case d.forgotten(h.is.Expires):
			continue
		case !all && d.holdsBack(h.is.Expires):
			kept = append(kept, h)
			continue
		}
		if err := d.putJSON(ctx, keyIssued+h.key, h.is, h.is.Expires); err != nil {
			kept = append(kept, d.unwritten[i:]...)
			clear(d.unwritten[len(kept):])
			d.unwritten = kept
			return err
		}
	}
	clear(d.unwritten[len(kept):])
	d.unwritten = kept
	return nil
}

// remember keeps who issued a key in memory, as a copy whose strings are its own: not the
// record's (which would keep the record's bytes alive with them), nor another shard's.
func (d *Detector) remember(key string, is *issued) (string, *issued) {
	c := *is
	fields := []*string{&key, &c.By, &c.Role, &c.Account, &c.Region, &c.SourceIP}
	if f := is.Function; f != nil {
		fc := *f
		c.Function = &fc
		fields = append(fields, &fc.Account, &fc.Region, &fc.Name, &fc.Role)
	}
	// One allocation for them all: a key is learned for every AssumeRole, and ten copies
	// of a few bytes each were 7% of the dense benchmark's allocations.
	cloudtrail.OwnStrings(fields...)
	d.issuedMemo[key] = &c
	return key, &c
}

// issuedAt returns who issued a key, if that was known at t: from its issue to its expiry.
func (d *Detector) issuedAt(ctx context.Context, key string, t time.Time) (*issued, error) {
	if key == "" || len(key) > maxField {
		return nil, nil
	}
	is, ok := d.issuedMemo[key]
	if !ok {
		var v issued
		found, err := d.getJSON(ctx, keyIssued+key, time.Time{}, &v)
		if err != nil {
			return nil, err
		}
		if !found {
			// Only the role owner's copy of a cross-account AssumeRole, if any.
			if found, err = d.getJSON(ctx, keyIssuedBy+key, time.Time{}, &v); err != nil {
				return nil, err
			}
			v.owner = found
		}
		if found {
			is = &v
		}
		if len(d.issuedMemo) > maxFacts {
			// What the memory holds alone is written before it is dropped.
			if err := d.writeIssuers(ctx, true); err != nil {
				return nil, err
			}
			clear(d.issuedMemo)
			d.unknownKeys = d.unknownKeys[:0]
		}
		key = strings.Clone(key)
		d.issuedMemo[key] = is
		if is == nil || is.owner {
			d.unknownKeys = append(d.unknownKeys, key)
		}
	}
	if is == nil || t.Before(is.At) || !t.Before(is.Expires) {
		return nil, nil
	}
	return is, nil
}

// learnRole records a sighting of a Lambda execution role and returns its entry (nil when
// none is held).
func (d *Detector) learnRole(account, role string, t time.Time) *factEntry {
	if account == "" || role == "" {
		return nil
	}
	ts := t.Unix()
	e, _ := d.sight(fact{prefix: keyRole, a: account, b: role}, func(v *factValue) change { return v.Days.add(ts) })
	return e
}

func (d *Detector) learnFunction(account, role, fn, region string, t time.Time) {
	d.learnFunctionIn(nil, nil, account, role, fn, region, t)
}

// learnFunctionIn is learnFunction given the role's and the function's entries where
// they were looked up already (nil: looked up here); it returns them.
func (d *Detector) learnFunctionIn(roleE, fnE *factEntry, account, role, fn, region string, t time.Time) (*factEntry, *factEntry) {
	if account == "" || role == "" || fn == "" {
		return roleE, fnE
	}
	ts := t.Unix()
	if roleE == nil {
		roleE = d.learnRole(account, role, t)
	} else {
		d.update(roleE, func(v *factValue) change { return v.Days.add(ts) })
	}
	regions := func(v *factValue) change {
		s, ok := v.Regions.get(region)
		c := s.add(ts)
		// A later sighting of a day held changes the days in place (add); anything else
		// may make a new slice, stored again.
		if !ok || c == changed {
			v.Regions.set(region, s)
		}
		return c
	}
	if fnE == nil {
		fnE, _ = d.sight(fact{prefix: keyFunction, a: account, b: role, c: fn}, regions)
	} else {
		d.update(fnE, regions)
	}
	return roleE, fnE
}

// isLambdaRole reports whether a role was a Lambda execution role within the training
// period before t (or is one in the inventory).
func (d *Detector) isLambdaRole(ctx context.Context, account, role string, t time.Time) (bool, error) {
	ok, _, err := d.lambdaRole(ctx, account, role, t)
	return ok, err
}

// lambdaRole is isLambdaRole with the role's entry when it was looked up (nil when the
// inventory answered).
func (d *Detector) lambdaRole(ctx context.Context, account, role string, t time.Time) (bool, *factEntry, error) {
	if role == "" {
		return false, nil, nil
	}
	if d.inv.hasRole(account, role) {
		return true, nil, nil
	}
	return d.seen(ctx, fact{prefix: keyRole, a: account, b: role}, t)
}

// knownFunctionInMemory reports whether this detector holds fn as a function of the role
// seen within the training period before t (memory only).
func (d *Detector) knownFunctionInMemory(account, role, fn string, t time.Time) bool {
	known, _ := d.functionInMemory(account, role, fn, t)
	return known
}

// functionInMemory is knownFunctionInMemory with the function's entry, if held.
func (d *Detector) functionInMemory(account, role, fn string, t time.Time) (bool, *factEntry) {
	e := d.lookup(fact{prefix: keyFunction, a: account, b: role, c: fn})
	if e == nil {
		return false, nil
	}
	return e.v.anyRegion(t.Unix(), int64(d.cfg.Training/time.Second)), e
}

// functionAt reports whether fn was a function of the role within the training period
// before t (or is one in the inventory), and its region where known: the region of its
// newest sighting that names one.
func (d *Detector) functionAt(ctx context.Context, account, role, fn string, t time.Time) (bool, string, error) {
	if f, ok := d.inv.function(account, role, fn); ok {
		return true, f.Region, nil
	}
	tr, ts := int64(d.cfg.Training/time.Second), t.Unix()
	holds := func(v *factValue) bool { return v.anyRegion(ts, tr) }
	e, err := d.entry(ctx, fact{prefix: keyFunction, a: account, b: role, c: fn}, holds)
	if err != nil || !holds(&e.v) {
		return false, "", err
	}
	region, newest := "", int64(0)
	for _, e := range e.v.Regions {
		if e.region == "" || !e.s.seen(ts, tr) {
			continue
		}
		if l := e.s.latest(ts); l > newest || l == newest && e.region < region {
			region, newest = e.region, l
		}
	}
	return true, region, nil
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
			if slices.Contains(lambdaPrincipals, svc) {
				return true
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
