package detect

import (
	"bytes"
	"context"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/gaissmai/bart"
	json "github.com/goccy/go-json"

	"github.com/outsider-sec/outsider/pkg/awsid"
	"github.com/outsider-sec/outsider/pkg/cloudtrail"
)

// ASNLookup tells the autonomous system that announces an address: its number and
// organisation, ok false when unknown. pkg/asn answers it from a MaxMind database.
type ASNLookup interface {
	ASN(netip.Addr) (number uint32, org string, ok bool)
}

// NoASN answers nothing: without ASN data the known-ASN title never matches, and findings
// carry no organisation.
type NoASN struct{}

// ASN implements ASNLookup.
func (NoASN) ASN(netip.Addr) (uint32, string, bool) { return 0, "", false }

// Stats counts what the detector saw and did.
type Stats struct {
	Records     int // records processed
	Outside     int // calls from outside AWS (any identity)
	LambdaUsed  int // calls with a Lambda function's token from outside
	Inactive    int // of those, in an account still in its activation period
	Trusted     int // calls from trusted networks
	Presigned   int // presigned-URL uses of a Lambda function's token from outside
	Created     int // findings opened
	Updated     int // findings updated
	Redelivered int // calls already counted in their finding (a redelivery)
	CrossRegion int // calls by a function's session from an AWS address in another region
	StoreReads  int
	StoreWrites int
	StoreClaims int
}

// Change is a finding that was opened (New) or updated.
type Change struct {
	Finding Finding
	New     bool
	// Again: the finding did not change; a call already counted in it came again (a
	// redelivery, a replay over the same state) and it is handed on again, so that an
	// import or email that failed the first time is retried.
	Again bool
}

// Detector decides on records one at a time, in event-time order as far as it is given
// them, and keeps its state in a Store. It is not safe for concurrent use: give each worker
// its own, over a shared Store; workers agree through the store's conditional writes.
type Detector struct {
	cfg     Config
	store   Store
	ranges  RangeLookup
	asns    ASNLookup
	trusted *bart.Lite
	now     func() time.Time // wall clock, for the freshness of negative answers only

	inv         inventory
	invLoaded   map[string]bool       // accounts whose stored inventory was read
	facts       map[string]*factEntry // by store key
	keyBuf      []byte                // scratch for lookup
	dirtyFacts  []*factEntry
	lateFacts   []*factEntry              // facts whose only change is a later last sighting, not yet written
	issuedMemo  map[string]*issued        // keys looked up since the last flush (nil: none issued)
	unknownKeys []string                  // the keys issuedMemo holds as not issued
	unwritten   []heldIssuer              // who issued keys, not written yet (SetForget)
	accts       map[uint64]acctRef        // the accounts' entries of facts, by account id (accountNumber): every record observes one
	encoded     bytes.Buffer              // putJSON's encoding, reused
	enc         *json.Encoder             // writing to encoded
	pending     map[string]*pending       // findings changed since the last Flush, by store key
	order       []string                  // their keys, in the order they were first changed
	touched     string                    // id of the finding the record in Process opened or updated
	clock       int64                     // the newest event time processed, Unix seconds: what memory may forget
	owns        func(account string) bool // nil: one shard, every account (SetShard)
	forget      int64                     // seconds: what expired this long before clock is not written (SetForget; 0: all is)
	exchange    *Exchange
	shared      *issued // what this record's cross-account AssumeRole issued, for the role owner's shard
	Stats       Stats
}

// New returns a detector. asns may be nil.
func New(cfg Config, store Store, ranges RangeLookup, asns ASNLookup) (*Detector, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("detect: %w", err)
	}
	if asns == nil {
		asns = NoASN{}
	}
	t := new(bart.Lite)
	for _, p := range cfg.Trusted {
		t.Insert(p)
	}
	return &Detector{
		cfg: cfg, store: store, ranges: ranges, asns: asns, trusted: t, now: time.Now,
		inv:        inventory{},
		invLoaded:  map[string]bool{},
		facts:      map[string]*factEntry{},
		accts:      map[uint64]acctRef{},
		issuedMemo: map[string]*issued{},
		pending:    map[string]*pending{},
	}, nil
}

// Process decides on one record and learns from it, and returns the id of the finding it
// opened or updated ("" when none): a caller whose sink refuses that finding retries the
// record's input. Findings are held until Flush. An error wraps ErrStore: the record must
// be retried.
func (d *Detector) Process(ctx context.Context, r *cloudtrail.Record) (finding string, err error) {
	d.touched = ""
	if d.foreignCopy(r) {
		return "", d.processForeign(ctx, r)
	}
	if d.sharedCaller(r) {
		// Published whatever happens: the role owner's shard waits for it.
		d.shared = nil
		defer func() { d.exchange.publish(r, d.shared, d.firstObserved(r.RecipientAccount)) }()
	}
	err = d.process(ctx, r)
	return d.touched, err
}

func (d *Detector) process(ctx context.Context, r *cloudtrail.Record) error {
	d.Stats.Records++
	if ts := r.Time.Unix(); ts > d.clock {
		d.clock = ts
	}
	// Activation counts the account's own trail: the account that logged the record.
	if err := d.observeAccount(ctx, r.RecipientAccount, r.Time); err != nil {
		return err
	}
	where, err := d.classify(ctx, r)
	if err != nil {
		return err
	}
	if where == Trusted {
		d.Stats.Trusted++
	}
	id := &r.Identity
	var c *caller // a role session's
	var sess caller
	if id.Type == cloudtrail.IdentityAssumedRole && id.Temporary() {
		sess.of(id)
		c = &sess
	}
	if r.Succeeded() {
		if err := d.learn(ctx, r, c); err != nil {
			return err
		}
	}
	if serviceCall(r, where) {
		return nil // AWS calling with the role, on its behalf: never usage from outside
	}
	if where.outside() {
		d.Stats.Outside++
	}
	if c != nil {
		switch where {
		case Outside, ForeignEndpoint, Trusted:
			return d.roleSessionOutside(ctx, r, c, where)
		default:
			return d.inside(ctx, r, c, where)
		}
	}
	if (where == Outside || where == Trusted) && r.Succeeded() && personType(id.Type) {
		return d.knownASN(ctx, r, id.Account())
	}
	return nil
}

// caller is who made a role session's call, derived once per record from its identity.
type caller struct {
	account   string // the identity's own account (a person's ASNs are its)
	roleAcct  string // the account of the role behind the session
	role      string // the role's name
	name      string // the session's name
	partition string
}

func (c *caller) of(id *cloudtrail.Identity) {
	*c = caller{account: id.Account(), role: id.RoleName(), name: id.SessionName(), partition: awsid.PartitionOf(id.IssuerARN)}
	switch {
	case id.IssuerAccount != "":
		c.roleAcct = id.IssuerAccount
	case awsid.Account(id.IssuerARN) != "":
		c.roleAcct = awsid.Account(id.IssuerARN)
	default:
		c.roleAcct = c.account
	}
}

// serviceCall: a call AWS made with the role on its behalf: invokedBy set (or an AWS
// service identity) with a service name, "AWS Internal" or an address inside AWS as the
// source, or a service name as the source. invokedBy with a public address outside AWS
// silences nothing: anyone can claim it, and no AWS service calls from there.
func serviceCall(r *cloudtrail.Record, where Where) bool {
	id := &r.Identity
	if where.outside() || where == Trusted {
		return false
	}
	return id.InvokedBy != "" || id.Type == cloudtrail.IdentityAWSService ||
		!r.Addr.IsValid() && strings.HasSuffix(r.SourceIP, ".amazonaws.com")
}

// observeAccount keeps when an account's own trail was first observed (activation).
func (d *Detector) observeAccount(ctx context.Context, account string, t time.Time) error {
	if account == "" {
		return nil
	}
	// A few hundred accounts, looked up on every record: a map of their own, keyed by
	// the id as a number and holding the first observation beside the entry, stays in
	// the cache where the facts' (tens of thousands) and the entries do not; records come
	// in event-time order, and one after the account's first changes nothing (the
	// lookups by string and the entries' reads were 4% of a dense replay's profile).
	// Evicted with the facts it is one of.
	ts := t.Unix()
	n, numbered := accountNumber(account)
	var e *factEntry
	if numbered {
		if a, ok := d.accts[n]; ok {
			if a.first != 0 && ts >= a.first {
				return nil // the entry's own first is at or before a.first: unchanged
			}
			e = a.e
		}
	}
	if e == nil {
		f := fact{prefix: keyAccount, a: account}
		if e = d.lookup(f); e == nil {
			if err := d.loadInventory(ctx, account); err != nil {
				return err
			}
			var err error
			if e, err = d.entry(ctx, f, func(*factValue) bool { return false }); err != nil {
				return err
			}
		}
	}
	d.update(e, func(v *factValue) change {
		if v.First == 0 || ts < v.First {
			v.First = ts
			return changed
		}
		return unchanged
	})
	if numbered && e.name != "" { // held (an unheld one is a key too long to keep)
		// An entry's first only ever moves earlier (merged with what the store holds),
		// so the copy here is never before it.
		d.accts[n] = acctRef{e, e.v.First}
	}
	return nil
}

// acctRef is an account's entry, and its first observation as last seen here.
type acctRef struct {
	e     *factEntry
	first int64
}

// accountNumber is a 12-digit account id as a number: the accounts' map is keyed by it,
// not by the id's string, whose bytes (the record's and the map's copy) were two cache
// misses on every record (4% of a dense replay's profile was that lookup). Anything else
// (no real record's) is looked up among the facts by its string.
func accountNumber(s string) (uint64, bool) {
	if len(s) != 12 {
		return 0, false
	}
	var n uint64
	for i := 0; i < len(s); i++ {
		c := s[i] - '0'
		if c > 9 {
			return 0, false
		}
		n = n*10 + uint64(c)
	}
	return n, true
}

// ours reports whether an account is the organisation's at t: a configured member, or an
// account whose own trail was observed at or before t.
func (d *Detector) ours(ctx context.Context, account string, t time.Time) (bool, error) {
	if slices.Contains(d.cfg.Members, account) {
		return true, nil
	}
	ts := t.Unix()
	holds := func(v *factValue) bool { return v.First != 0 && v.First <= ts }
	e, err := d.entry(ctx, fact{prefix: keyAccount, a: account}, holds)
	if err != nil {
		return false, err
	}
	return holds(&e.v), nil
}

// active reports whether an account's own trail had been observed for the activation
// period at t.
func (d *Detector) active(ctx context.Context, account string, t time.Time) (bool, error) {
	lim := t.Add(-d.cfg.Activation).Unix()
	e, err := d.entry(ctx, fact{prefix: keyAccount, a: account}, func(v *factValue) bool {
		return v.First != 0 && v.First <= lim
	})
	if err != nil {
		return false, err
	}
	return e.v.First != 0 && e.v.First <= lim, nil
}

// inside handles a call of a role session from inside AWS: a function's own call teaches
// its function (from the exec-env user agent), and its key is then "seen inside".
func (d *Detector) inside(ctx context.Context, r *cloudtrail.Record, c *caller, where Where) error {
	if !r.Succeeded() {
		return nil // a failed call from inside does not make a key seen inside
	}
	if where == NotAnAddress {
		// "AWS Internal", a service name: AWS acting, not the function's own code. It
		// neither teaches a function nor makes a key seen inside.
		return nil
	}
	id := &r.Identity
	account, role, sess, t := c.roleAcct, c.role, c.name, r.Time
	if role == "" {
		return nil
	}
	// The role's and the function's entries, once looked up, are handed on: a function's
	// call from inside is most of a dense history, and each lookup builds and hashes a
	// key of tens of bytes in a map of tens of thousands, and misses the cache.
	lambdaRole, roleE, err := d.lambdaRole(ctx, account, role, t)
	if err != nil {
		return err
	}
	var fnE *factEntry // the function's, taught below
	taught := ""
	if strings.Contains(r.UserAgent, lambdaExecEnv) && sess != "" {
		fn := functionOfSession(sess)
		teach, e := d.functionInMemory(account, role, fn, t)
		if !teach {
			// A session whose key another identity obtained is a chained token, not the
			// function's own: it teaches nothing.
			is, err := d.issuedAt(ctx, id.AccessKeyID, t)
			if err != nil {
				return err
			}
			teach = is == nil || is.Lambda
		}
		if teach {
			// The function's region is where its address is, not awsRegion: a function
			// calls IAM or STS in us-east-1 from wherever it runs.
			region := ""
			if rl, ok := d.ranges.(RegionLookup); ok && where == AWS {
				if region = rl.Region(r.Addr); region == "GLOBAL" {
					region = ""
				}
			}
			roleE, fnE = d.learnFunctionIn(roleE, e, account, role, fn, region, t)
			taught, lambdaRole = fn, true
		}
	}
	if !lambdaRole {
		// A chained key (one a function's session obtained) used by the function's code
		// (its SDK's exec-env user agent) from inside is seen inside too: its use from
		// outside is a live credential in two places, like the function's own key. Other
		// identities' calls from inside stay off the store: the hot path.
		if !strings.Contains(r.UserAgent, lambdaExecEnv) {
			return nil
		}
		is, err := d.issuedAt(ctx, id.AccessKeyID, t)
		if err != nil || is == nil || is.Function == nil {
			return err
		}
	}
	ip := r.SourceIP
	ts := t.Unix()
	e, isNew := d.sight(fact{prefix: keyInside, a: id.AccessKeyID}, func(v *factValue) change {
		c := v.Days.add(ts)
		if v.IP == "" {
			v.IP, c = strings.Clone(ip), changed
		}
		return c
	})
	if e == nil {
		return nil // a key no real record carries: not kept
	}
	if isNew && sess != "" && !strings.HasPrefix(sess, "awslambda_") {
		// A key Lambda issued, used from inside under a session name: that name is the
		// function's, and the issuing AssumeRole's region is its region. Asked once per
		// key; its later calls keep the function seen.
		is, err := d.issuedAt(ctx, id.AccessKeyID, t)
		if err != nil {
			return err
		}
		if is != nil && is.Lambda {
			e.fn, e.region = strings.Clone(functionOfSession(sess)), strings.Clone(is.Region)
		}
	}
	if e.fn != "" {
		if e.fn != taught {
			fnE = nil
		}
		d.learnFunctionIn(roleE, fnE, account, role, e.fn, e.region, t)
	}
	if where == AWS && d.cfg.CrossRegion && lambdaRole {
		return d.crossRegion(ctx, r, c)
	}
	return nil
}

// functionOfSession is the function a session name names: a Lambda@Edge replica's
// session is "<region>.<function>".
func functionOfSession(sess string) string {
	if i := strings.IndexByte(sess, '.'); i > 0 && looksLikeRegion(sess[:i]) {
		return sess[i+1:]
	}
	return sess
}

// looksLikeRegion: "us-east-1", "ap-southeast-2", "us-gov-west-1".
func looksLikeRegion(s string) bool {
	parts := strings.Split(s, "-")
	if len(parts) < 3 || len(parts[0]) != 2 {
		return false
	}
	_, err := strconv.Atoi(parts[len(parts)-1])
	return err == nil
}

// personType: identity types only a person holds (or a person's federation).
func personType(t string) bool {
	switch t {
	case cloudtrail.IdentityIAMUser, cloudtrail.IdentityRoot, "SAMLUser", "IdentityCenterUser":
		return true
	}
	return false
}

// knownASN records the ASN of a successful call by one of an account's people from a
// public address outside AWS: it makes that ASN "known" for the account (title 3).
func (d *Detector) knownASN(ctx context.Context, r *cloudtrail.Record, account string) error {
	number, _, ok := d.asns.ASN(r.Addr)
	if !ok || account == "" {
		return nil
	}
	ts := r.Time.Unix()
	d.sight(fact{prefix: keyASN, a: account, b: strconv.FormatUint(uint64(number), 10)}, func(v *factValue) change {
		return v.Days.add(ts)
	})
	return nil
}

func (d *Detector) getJSON(ctx context.Context, key string, t time.Time, v any) (bool, error) {
	d.Stats.StoreReads++
	b, ok, err := d.store.Get(ctx, key, t)
	if err != nil {
		return false, fmt.Errorf("%w: get %s: %w", ErrStore, key, err)
	}
	if !ok {
		return false, nil
	}
	if err := json.Unmarshal(b, v); err != nil {
		return false, fmt.Errorf("%w: %s holds a bad value: %w", ErrStore, key, err)
	}
	return true, nil
}

func (d *Detector) putJSON(ctx context.Context, key string, v any, expires time.Time) error {
	if len(key) > 2*maxFactKey {
		return nil // names no real record carries: not kept
	}
	d.Stats.StoreWrites++
	// Encoded into this detector's buffer: every store copies what Put is given (a dense
	// replay's keys and issuers are most of its writes, and each was two allocations).
	if d.enc == nil {
		d.enc = json.NewEncoder(&d.encoded)
	}
	d.encoded.Reset()
	if err := d.enc.Encode(v); err != nil {
		return fmt.Errorf("detect: encode %s: %w", key, err)
	}
	b := bytes.TrimSuffix(d.encoded.Bytes(), []byte("\n")) // json.Marshal's bytes
	if err := d.store.Put(ctx, key, b, expires); err != nil {
		return fmt.Errorf("%w: put %s: %w", ErrStore, key, err)
	}
	return nil
}
