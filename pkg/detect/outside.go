package detect

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/outsider-sec/outsider/pkg/cloudtrail"
)

// Interactive command-line and attack tools, by a lower-case piece of their user agent
// (title 2). The AWS CLI writes "aws-cli/VERSION"; AWS Tools for PowerShell
// "AWSPowerShell…" or "…PowerShell/VERSION"; offensive tools often keep their name or the
// name of the distribution they run on (GuardDuty's PenTest findings look for the same).
var cliAgents = []string{
	"aws-cli/", "awspowershell", "powershell/", "aws-shell", "pacu", "scoutsuite", "scout suite",
	"cloudfox", "prowler", "stratus-red-team", "cloudsploit", "weirdaal", "enumerate-iam",
	"cloudmapper", "kali", "parrot", "pentoo",
}

// CommandLine reports whether a user agent is an interactive command-line or attack tool.
func CommandLine(ua string) bool {
	ua = strings.ToLower(ua)
	for _, a := range cliAgents {
		if strings.Contains(ua, a) {
			return true
		}
	}
	return false
}

// outside handles a call from outside AWS with a temporary key of a Lambda role's session.
func (d *Detector) outside(ctx context.Context, r *cloudtrail.Record) error {
	d.Stats.LambdaUsed++
	id := &r.Identity
	t := r.Time
	account, role, sess, key := roleAccount(id), id.RoleName(), id.SessionName(), id.AccessKeyID

	var is issued
	issuedFound, err := d.getJSON(ctx, keyIssued+key, t, &is)
	if err != nil {
		return err
	}
	lambdaSession, fn, region, issuedBy := false, "", "", ""
	switch {
	case issuedFound && is.Lambda:
		lambdaSession, region = true, is.Region
		if !strings.HasPrefix(sess, "awslambda_") {
			fn = sess
		}
	case issuedFound:
		issuedBy = is.By
	default:
		ok, reg, err := d.functionOf(ctx, account, role, sess, t)
		if err != nil {
			return err
		}
		switch {
		case ok:
			lambdaSession, fn, region = true, sess, reg
		case strings.HasPrefix(sess, "awslambda_"):
			lambdaSession = true
		}
	}
	if lambdaSession && fn == "" {
		if f, ok := d.inv.only(account, role); ok {
			fn, region = f.Name, f.Region
		}
	}
	if lambdaSession && fn != "" {
		if f, ok := d.inv.function(account, role, fn); ok {
			region = f.Region
		} else if region == "" {
			if _, reg, err := d.functionOf(ctx, account, role, fn, t); err != nil {
				return err
			} else {
				region = reg
			}
		}
	}

	// Every signal that holds, whatever the title.
	u := use{
		at: t, eventID: r.EventID, ip: r.Addr.String(), service: r.Source, name: r.Name, region: r.Region,
		errorCode: r.ErrorCode, userAgent: r.UserAgent, key: key, signals: []string{SignalOutside},
	}
	if !lambdaSession {
		u.signals = append(u.signals, SignalNotIssued)
	}
	if CommandLine(r.UserAgent) {
		u.signals = append(u.signals, SignalCLI)
	}
	if info, ok := d.asns.Lookup(r.Addr); ok {
		u.asn, u.org = info.Number, info.Org
		var seen struct{ Seen time.Time }
		known, err := d.getJSON(ctx, fact{keyASN, account, strconv.FormatUint(uint64(info.Number), 10), ""}.String(), t, &seen)
		if err != nil {
			return err
		}
		if known {
			u.signals = append(u.signals, SignalKnownASN)
		}
	}
	var in Sighting
	inside, err := d.getJSON(ctx, keyInside+key, t, &in)
	if err != nil {
		return err
	}
	if inside {
		u.signals = append(u.signals, SignalKeyInside)
		u.inside = &in
	}
	if r.ErrorCode != "" {
		u.signals = append(u.signals, SignalFailedCalls)
	}

	title := TitleRemote
	switch {
	case !lambdaSession:
		title = TitleRole
	case slices.Contains(u.signals, SignalCLI):
		title = TitleCLI
	case slices.Contains(u.signals, SignalKnownASN):
		title = TitleKnownASN
	case inside:
		title = TitleInside
	}

	if !d.active(account, t) {
		d.Stats.Inactive++
		return nil // still training (DESIGN §5: activation)
	}
	if d.cfg.TrainOnly {
		return nil
	}

	kind, subject := SubjectFunction, fn
	if title == TitleRole || fn == "" {
		kind, subject = SubjectRole, role
	}
	partition := partitionOf(id.IssuerARN)
	f := Finding{
		Title: title, Severity: d.cfg.Severity[title], Account: account, Partition: partition,
		SubjectKind: kind, Subject: subject, Role: role, Session: sess, IssuedBy: issuedBy,
		RoleARN: id.IssuerARN,
	}
	if f.RoleARN == "" {
		f.RoleARN = fmt.Sprintf("arn:%s:iam::%s:role/%s", partition, account, role)
	}
	if fn != "" && lambdaSession {
		f.Function = fn
		if region == "" {
			region = r.Region
			u.signals = append(u.signals, SignalUnknownRegion)
		}
		f.FunctionARN = fmt.Sprintf("arn:%s:lambda:%s:%s:function:%s", partition, region, account, fn)
	}
	if region == "" {
		region = r.Region
	}
	f.Region = region
	return d.record(ctx, f, u)
}

// SignalCrossRegion: the call came from an AWS address of another region than the function's.
const SignalCrossRegion = "token-used-from-another-aws-region"

// crossRegion raises TitleCrossRegion for a function's own session calling from an AWS
// address in another region than the function's. The function's region is what this
// worker learned (its calls, its CreateFunction, Lambda's AssumeRole, the inventory); an
// unknown region, or a global prefix, raises nothing.
func (d *Detector) crossRegion(ctx context.Context, r *cloudtrail.Record) error {
	rl, ok := d.ranges.(RegionLookup)
	if !ok {
		return nil
	}
	id := &r.Identity
	account, role, fn := roleAccount(id), id.RoleName(), id.SessionName()
	k := fnKey{account, role, fn}
	fnRegion := d.fnRegion[k]
	if inv, ok := d.inv.function(account, role, fn); ok {
		fnRegion = inv.Region
	}
	from := rl.Region(r.Addr)
	if fnRegion == "" || from == "" || from == "GLOBAL" || from == fnRegion || !d.knownFunction(account, role, fn, r.Time) && !d.inv.hasRole(account, role) {
		return nil
	}
	d.Stats.CrossRegion++
	if !d.active(account, r.Time) || d.cfg.TrainOnly {
		return nil
	}
	partition := partitionOf(id.IssuerARN)
	f := Finding{
		Title: TitleCrossRegion, Severity: d.cfg.Severity[TitleCrossRegion], Account: account, Partition: partition, Region: fnRegion,
		SubjectKind: SubjectFunction, Subject: fn, Function: fn, Role: role, RoleARN: id.IssuerARN, Session: fn,
		FunctionARN: fmt.Sprintf("arn:%s:lambda:%s:%s:function:%s", partition, fnRegion, account, fn),
	}
	u := use{
		at: r.Time, eventID: r.EventID, ip: r.Addr.String(), service: r.Source, name: r.Name, region: r.Region,
		errorCode: r.ErrorCode, userAgent: r.UserAgent, key: id.AccessKeyID, signals: []string{SignalCrossRegion},
	}
	if CommandLine(r.UserAgent) {
		u.signals = append(u.signals, SignalCLI)
	}
	return d.record(ctx, f, u)
}

func partitionOf(arn string) string {
	if p := strings.SplitN(arn, ":", 3); len(p) == 3 && p[0] == "arn" && p[1] != "" {
		return p[1]
	}
	return "aws"
}

// record folds a use into the open finding of its (account, subject, title), or opens a
// new one when none is open (DESIGN §5: deduplication).
func (d *Detector) record(ctx context.Context, f Finding, u use) error {
	key := findingKey(f)
	if id, ok := d.open[key]; ok {
		if p := d.dirty[id]; !u.at.Before(p.f.WindowStart) && u.at.Before(p.f.WindowStart.Add(d.cfg.Dedup)) {
			d.fold(p, u)
			return nil
		}
	}
	for attempt := 0; attempt < 3; attempt++ {
		var cur Finding
		found, err := d.getJSON(ctx, key, u.at, &cur)
		if err != nil {
			return err
		}
		if found {
			p, ok := d.dirty[cur.ID]
			if !ok {
				if err := d.investigate(ctx, &cur, u.at); err != nil {
					return err
				}
				p = &pending{f: cur}
				d.dirty[cur.ID] = p
				d.order = append(d.order, cur.ID)
			}
			d.fold(p, u)
			d.open[key] = cur.ID
			return nil
		}
		n := f
		n.WindowStart = u.at
		n.ID = findingID(n.Account, n.SubjectKind, n.Subject, n.Title, n.WindowStart)
		n.merge(u, d.cfg.MaxList)
		if err := d.investigate(ctx, &n, u.at); err != nil {
			return err
		}
		b, err := json.Marshal(n)
		if err != nil {
			return fmt.Errorf("detect: encode finding: %w", err)
		}
		d.Stats.StoreClaims++
		won, err := d.store.Claim(ctx, key, b, u.at, n.WindowStart.Add(d.cfg.Dedup))
		if err != nil {
			return fmt.Errorf("%w: claim %s: %w", ErrStore, key, err)
		}
		if won {
			d.touched = n.ID
			d.dirty[n.ID] = &pending{f: n, new: true}
			d.order = append(d.order, n.ID)
			d.open[key] = n.ID
			return nil
		}
		// Another worker opened it between our read and our claim: read it again.
	}
	return fmt.Errorf("%w: claim %s: lost three races in a row", ErrStore, key)
}

// investigate answers the detector card's first two questions for a finding: is the role
// (still) attached to the function, and who else assumed the role within the training
// period. It runs when a finding enters a batch, so answers stay current as it is updated.
func (d *Detector) investigate(ctx context.Context, f *Finding, t time.Time) error {
	f.Attached, f.AttachedDetail = AttachedUnknown, ""
	if f.Function == "" {
		// A finding about the role: which functions is it attached to?
		var fns []string
		for _, inv := range d.inv[f.Account+"#"+f.Role] {
			fns = append(fns, inv.Name)
		}
		for k, seen := range d.fns {
			if k.account == f.Account && k.role == f.Role && seen.After(t.Add(-d.cfg.Training)) && !slices.Contains(fns, k.fn) {
				fns = append(fns, k.fn)
			}
		}
		if len(fns) > 0 {
			slices.Sort(fns)
			f.Attached, f.AttachedDetail = AttachedYes, "the role of function(s) "+strings.Join(fns, ", ")
		}
	} else {
		switch inv, listed := d.inv.function(f.Account, f.Role, f.Function); {
		case listed:
			f.Attached, f.AttachedDetail = AttachedYes, "the Lambda inventory lists "+inv.ARN+" with this role"
		case d.inv.hasAccount(f.Account):
			f.Attached = AttachedNo
			if other, ok := d.inv.roleOf(f.Account, f.Function); ok {
				f.AttachedDetail = "the function now uses role " + other
			} else {
				f.AttachedDetail = "the Lambda inventory does not list the function with this role"
			}
		default:
			var fr fnRole
			found, err := d.getJSON(ctx, fact{keyFnRole, f.Account, f.Function, ""}.String(), t, &fr)
			if err != nil {
				return err
			}
			if found && fr.Role != f.Role {
				f.Attached, f.AttachedDetail = AttachedNo, fmt.Sprintf("the function was given role %s on %s", fr.Role, fr.At.UTC().Format(time.RFC3339))
			} else if found {
				f.Attached, f.AttachedDetail = AttachedYes, fmt.Sprintf("the function was given this role on %s", fr.At.UTC().Format(time.RFC3339))
			}
		}
	}
	var list []Assumption
	if _, err := d.getJSON(ctx, fact{keyAssumers, f.Account, f.Role, ""}.String(), t, &list); err != nil {
		return err
	}
	f.AssumedBy = list
	return nil
}

func (d *Detector) fold(p *pending, u use) {
	d.touched = p.f.ID
	if !p.f.merge(u, d.cfg.MaxList) {
		d.Stats.Redelivered++
	}
}

// Flush writes the findings changed since the last Flush and returns them, in the order
// they were first changed. New is true for a finding opened since the last Flush.
func (d *Detector) Flush(ctx context.Context) ([]Change, error) {
	if len(d.order) == 0 {
		return nil, nil
	}
	out := make([]Change, 0, len(d.order))
	for _, id := range d.order {
		p := d.dirty[id]
		if err := d.putJSON(ctx, findingKey(p.f), p.f, p.f.WindowStart.Add(d.cfg.Dedup)); err != nil {
			return nil, err
		}
		out = append(out, Change{Finding: p.f, New: p.new})
	}
	for _, c := range out {
		if c.New {
			d.Stats.Created++
		} else {
			d.Stats.Updated++
		}
	}
	clear(d.dirty)
	clear(d.open)
	d.order = d.order[:0]
	return out, nil
}

func findingKey(f Finding) string {
	return keyFinding + f.Account + "#" + f.SubjectKind + "#" + f.Subject + "#" + f.Title.Code()
}
