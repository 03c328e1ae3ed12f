package detect

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"slices"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// Signals: every condition that held for a finding's calls, whatever its title.
const (
	SignalOutside       = "token-used-outside-aws"
	SignalNotIssued     = "session-not-issued-by-lambda"
	SignalCLI           = "command-line-user-agent"
	SignalKnownASN      = "known-asn"
	SignalKeyInside     = "key-also-used-inside-aws"
	SignalFailedCalls   = "failed-calls"
	SignalUnknownRegion = "function-region-unknown"
	SignalChained       = "chained-token-obtained-by-the-function"
	SignalPresigned     = "presigned-url-used-from-outside"
)

// Subject kinds: a finding is about a function, or about a role when the session is not
// Lambda's (or Lambda's, but its function is not known).
const (
	SubjectFunction = "function"
	SubjectRole     = "role"
)

// Finding is the detector's account of one (account, subject, title) in one dedup period.
// Its fields are what Security Hub's finding and the email are built from.
type Finding struct {
	ID          string `json:"id"`
	Title       Title  `json:"title"`
	Severity    string `json:"severity"`
	Account     string `json:"account"`
	Partition   string `json:"partition"`
	Region      string `json:"region"` // the function's region (or the first call's)
	SubjectKind string `json:"subjectKind"`
	Subject     string `json:"subject"`
	Function    string `json:"function,omitempty"`
	FunctionARN string `json:"functionArn,omitempty"`
	Role        string `json:"role"`
	RoleARN     string `json:"roleArn"`
	// ChainedRoleARN: the role whose key the function's session obtained, when the key
	// used was such a chained token. RoleARN is then the function's own role.
	ChainedRoleARN string    `json:"chainedRoleArn,omitempty"`
	Drill          bool      `json:"drill,omitempty"` // the drill's canary: a test, not a theft
	Session        string    `json:"session"`
	IssuedBy       string    `json:"issuedBy,omitempty"` // who assumed the role, when not Lambda
	Signals        []string  `json:"signals"`
	PeriodStart    time.Time `json:"periodStart"` // the start of its fixed dedup period
	FirstSeen      time.Time `json:"firstSeen"`
	LastSeen       time.Time `json:"lastSeen"`
	Count          int       `json:"count"`
	Failed         int       `json:"failed"`
	AccessKeys     []string  `json:"accessKeys"`
	KeysExpire     time.Time `json:"keysExpire,omitzero"` // the latest expiry of its keys, as their issue said
	Sources        []Source  `json:"sources"`
	Calls          []Call    `json:"calls"`
	UserAgents     []string  `json:"userAgents"`
	InsideSeen     *Sighting `json:"insideSeen,omitempty"` // the key's use inside AWS, for the token title

	// The investigative answers (is the role attached, who assumed it), kept current as calls update the finding.
	Attached       string       `json:"attached"`                 // is the role attached to the function: Attached* constants
	AttachedDetail string       `json:"attachedDetail,omitempty"` // e.g. the role the function uses now
	AssumedBy      []Assumption `json:"assumedBy,omitempty"`      // AssumeRole of the role by identities other than Lambda
	// Calls: a digest of every call counted (its eventID), so that a call is counted once.
	EventIDs []string `json:"eventIds"`
	// Saturated: more calls than EventIDs can hold. Count is then a lower bound ("at
	// least"); later calls still add to the bounded lists, the signals and the times.
	Saturated bool `json:"saturated,omitempty"`
	// Presigned counts the presigned-URL uses of the function's token from outside in the
	// period (S3 object operations): listed, with their APIs, not counted as calls.
	Presigned int `json:"presigned,omitempty"`
	// Revised is when this version was made, as Security Hub reads it (UpdatedAt): the
	// last call's time, or a millisecond after the version it replaced when that is not
	// earlier. Each stored version is later than the one before it, whatever the order of
	// the calls: Security Hub ignores an import whose UpdatedAt is not later than its own
	// copy's, and a late call (a backfill, a redelivery) adds to a finding without moving
	// its last call. https://docs.aws.amazon.com/securityhub/latest/userguide/finding-update-batchimportfindings.html
	Revised time.Time `json:"revised,omitzero"`
}

// revise dates a new version of f, which replaces the version dated f.Revised.
func (f *Finding) revise() {
	next := f.LastSeen
	if !f.Revised.IsZero() && !next.After(f.Revised) {
		next = f.Revised.Add(time.Millisecond)
	}
	f.Revised = next
}

// callSet is a finding's EventIDs as a set: merging thousands of calls stays linear.
type callSet map[string]bool

func newCallSet(f *Finding) callSet {
	c := make(callSet, len(f.EventIDs))
	for _, e := range f.EventIDs {
		c[e] = true
	}
	return c
}

// Is the role attached to the function?
const (
	AttachedYes     = "yes"
	AttachedNo      = "no longer"
	AttachedUnknown = "unknown"
)

// Assumption is one sts:AssumeRole of a Lambda role by an identity other than Lambda.
type Assumption struct {
	By       string    `json:"by"`
	At       time.Time `json:"at"`
	SourceIP string    `json:"sourceIp,omitempty"`
	Key      string    `json:"key,omitempty"` // the key it was issued
}

// Source is an address the token was used from.
type Source struct {
	IP    string `json:"ip"`
	ASN   uint32 `json:"asn,omitempty"`
	Org   string `json:"org,omitempty"`
	Count int    `json:"count"`
}

// Call is an API action made with the token from outside.
type Call struct {
	Service  string    `json:"service"`
	Name     string    `json:"name"`
	Region   string    `json:"region"`
	Count    int       `json:"count"`
	Errors   int       `json:"errors"`
	LastSeen time.Time `json:"lastSeen"`
	LastErr  string    `json:"lastError,omitempty"`
}

// Sighting is a use of the key from inside AWS.
type Sighting struct {
	At time.Time `json:"at"`
	IP string    `json:"ip"`
}

// findingID is deterministic: the dedup key and the period's start. Re-imports of the same
// period update the same Security Hub finding instead of adding one.
func findingID(account, kind, subject string, t Title, start time.Time) string {
	return fmt.Sprintf("outsider/%s/%s/%s/%s/%s", account, kind, subject, t.Code(), start.UTC().Format("20060102T150405Z"))
}

// maxEventIDs bounds the calls a finding remembers by digest (12 hex digits each, about
// 60 KB), far below DynamoDB's 400 KB item. Past it, a finding counts no more calls (a
// redelivery could otherwise count one twice: its count is then "at least"), and still
// gathers every later call's addresses, APIs, user agents, keys and signals.
const maxEventIDs = 4096

// eventDigest is a call's eventID in 48 bits: collisions within one finding's calls are
// out of reach (4096² / 2⁴⁹).
func eventDigest(id string) string {
	h := sha256.Sum256([]byte(id))
	return hex.EncodeToString(h[:6])
}

// use is one call with the token, folded into a finding.
type use struct {
	at         time.Time
	recipient  string // recipientAccountId: with eventID, the call's identity
	eventID    string
	ip         string
	asn        uint32
	org        string
	service    string
	name       string
	region     string
	errorCode  string
	userAgent  string
	key        string
	keyExpires time.Time
	signals    []string
	inside     *Sighting
	presigned  bool // a presigned-URL use: a signal (with its API), not a call
	uses       int  // a presigned use: the uses its period holds
}

// merge folds u into f. It reports false when u added nothing (a redelivery).
func (f *Finding) merge(u use, limit int, ids callSet) bool {
	if u.presigned {
		sig := SignalPresigned + ":" + u.name
		changed := u.uses > f.Presigned
		f.Presigned = max(f.Presigned, u.uses)
		if !slices.Contains(f.Signals, sig) && len(f.Signals) < 2*limit {
			f.Signals = append(f.Signals, sig)
			changed = true
		}
		return changed
	}
	counted := true
	if u.eventID != "" {
		id := eventDigest(u.recipient + "#" + u.eventID)
		switch {
		case ids[id]:
			return false
		case len(f.EventIDs) >= maxEventIDs:
			// Full: the call is not counted (it might be one already counted), but what it
			// shows is gathered: a thief cannot pad a finding to hide what comes next.
			f.Saturated, counted = true, false
		default:
			f.EventIDs, ids[id] = append(f.EventIDs, id), true
		}
	}
	changed := counted
	if counted {
		f.Count++
		if u.errorCode != "" {
			f.Failed++
		}
	}
	if f.FirstSeen.IsZero() || u.at.Before(f.FirstSeen) {
		f.FirstSeen, changed = u.at, true
	}
	if u.at.After(f.LastSeen) {
		f.LastSeen, changed = u.at, true
	}
	for _, s := range u.signals {
		if !slices.Contains(f.Signals, s) {
			f.Signals, changed = append(f.Signals, s), true
		}
	}
	if f.InsideSeen == nil && u.inside != nil {
		f.InsideSeen, changed = u.inside, true
	}
	if u.keyExpires.After(f.KeysExpire) {
		f.KeysExpire, changed = u.keyExpires.UTC(), true
	}
	n := len(f.AccessKeys) + len(f.UserAgents)
	f.AccessKeys = addBounded(f.AccessKeys, u.key, limit)
	f.UserAgents = addBounded(f.UserAgents, u.userAgent, limit)
	changed = changed || n != len(f.AccessKeys)+len(f.UserAgents)

	if i := slices.IndexFunc(f.Sources, func(s Source) bool { return s.IP == u.ip }); i >= 0 {
		if counted {
			f.Sources[i].Count++
		}
	} else if len(f.Sources) < limit {
		f.Sources, changed = append(f.Sources, Source{IP: u.ip, ASN: u.asn, Org: u.org, Count: 1}), true
	}

	i := slices.IndexFunc(f.Calls, func(c Call) bool {
		return c.Service == u.service && c.Name == u.name && c.Region == u.region
	})
	if i < 0 {
		f.Calls, changed = append(f.Calls, Call{Service: u.service, Name: u.name, Region: u.region}), true
		i = len(f.Calls) - 1
	}
	c := &f.Calls[i]
	if counted || c.Count == 0 {
		c.Count++
		if u.errorCode != "" {
			c.Errors++
			c.LastErr = u.errorCode
		}
	}
	if u.at.After(c.LastSeen) {
		c.LastSeen = u.at
	}
	if len(f.Calls) > limit {
		// Keep the newest calls: they say what the attacker is doing now.
		slices.SortStableFunc(f.Calls, func(a, b Call) int { return b.LastSeen.Compare(a.LastSeen) })
		f.Calls = f.Calls[:limit]
	}
	return changed
}

// Bounds of what a record carries into a finding: every string an attacker may choose is
// cut and stripped of control characters before it is stored, printed or emailed.
const (
	maxUserAgent = 256
	maxField     = 128
)

// bound strips control and format characters (newlines, escapes, bidirectional overrides,
// the line and paragraph separators U+2028 and U+2029) and cuts s to n bytes on a
// character boundary.
func bound(s string, n int) string {
	clean := true
	for _, r := range s {
		if unprintable(r) {
			clean = false
			break
		}
	}
	if clean && len(s) <= n {
		return s
	}
	var b strings.Builder
	for _, r := range s {
		if unprintable(r) {
			continue
		}
		if b.Len()+utf8.RuneLen(r) > n {
			break
		}
		b.WriteRune(r)
	}
	return b.String()
}

// unprintable: what a string from a record must not carry into a finding or an email.
// U+2028 and U+2029 (categories Zl, Zp) break lines like a newline in many readers.
func unprintable(r rune) bool {
	return unicode.IsControl(r) || unicode.Is(unicode.Cf, r) || unicode.In(r, unicode.Zl, unicode.Zp) || r == utf8.RuneError
}

func (u *use) bound() {
	u.userAgent = bound(u.userAgent, maxUserAgent)
	u.eventID = bound(u.eventID, maxField)
	u.service, u.name, u.region = bound(u.service, maxField), bound(u.name, maxField), bound(u.region, maxField)
	u.errorCode, u.key, u.org = bound(u.errorCode, maxField), bound(u.key, maxField), bound(u.org, maxField)
}

func (f *Finding) bound() {
	for _, p := range []*string{&f.Account, &f.Region, &f.Subject, &f.Function, &f.Role, &f.Session, &f.Partition} {
		*p = bound(*p, maxField)
	}
	for _, p := range []*string{&f.FunctionARN, &f.RoleARN, &f.ChainedRoleARN, &f.IssuedBy} {
		*p = bound(*p, 2*maxField)
	}
}

// resetCounts empties what calls add to a finding, keeping who and what it is about.
func (f *Finding) resetCounts() {
	f.Signals, f.FirstSeen, f.LastSeen, f.Count, f.Failed = nil, time.Time{}, time.Time{}, 0, 0
	f.AccessKeys, f.Sources, f.Calls, f.UserAgents, f.InsideSeen = nil, nil, nil, nil, nil
	f.EventIDs, f.Saturated, f.Presigned = nil, false, 0
}

func addBounded(list []string, v string, max int) []string {
	if v == "" || slices.Contains(list, v) || len(list) >= max {
		return list
	}
	return append(list, v)
}

// CallNames lists the calls as "service:Name" (the service without ".amazonaws.com").
func (f *Finding) CallNames() []string {
	out := make([]string, 0, len(f.Calls))
	for _, c := range f.Calls {
		out = append(out, strings.TrimSuffix(c.Service, ".amazonaws.com")+":"+c.Name)
	}
	return out
}

// SourceIPs lists the addresses the token was used from.
func (f *Finding) SourceIPs() []string {
	out := make([]string, 0, len(f.Sources))
	for _, s := range f.Sources {
		out = append(out, s.IP)
	}
	return out
}
