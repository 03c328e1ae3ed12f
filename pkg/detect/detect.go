package detect

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/gaissmai/bart"

	"github.com/outsider-sec/outsider/pkg/asn"
	"github.com/outsider-sec/outsider/pkg/cloudtrail"
)

// ASNLookup tells the autonomous system of an address. A nil *asn.DB answers nothing.
type ASNLookup interface {
	Lookup(netip.Addr) (asn.Info, bool)
}

// Stats counts what the detector saw and did.
type Stats struct {
	Records     int // records processed
	Outside     int // calls from outside AWS (any identity)
	LambdaUsed  int // calls with a Lambda role's session from outside
	Inactive    int // of those, in an account still in its activation period
	Trusted     int // calls from trusted networks
	Created     int // findings opened
	Updated     int // findings updated
	Redelivered int // calls already merged into their finding (a redelivery)
	CrossRegion int // calls by a function's session from an AWS address in another region
	StoreReads  int
	StoreWrites int
	StoreClaims int
}

// Change is a finding that was opened (New) or updated.
type Change struct {
	Finding Finding
	New     bool
}

// Detector is DESIGN §2–§5. It is not safe for concurrent use: give each worker its own,
// over a shared Store.
type Detector struct {
	cfg     Config
	store   Store
	ranges  RangeLookup
	asns    ASNLookup
	trusted *bart.Lite
	now     func() time.Time // wall clock, for the freshness of negative caches only

	inv       inventory
	invLoaded map[string]bool      // accounts whose stored inventory was read
	accounts  map[string]time.Time // first observed, per account
	roles     map[roleKey]roleFact
	fns       map[fnKey]time.Time // functions learned, last seen (event time)
	fnRegion  map[fnKey]string    // their regions, where known
	written   map[fact]bool       // baseline facts written today (event-time day)
	day       int64
	dirty     map[string]*pending // findings changed since the last Flush, by id
	open      map[string]string   // finding key -> id of its newest pending finding
	order     []string            // ids of dirty, in the order they were first changed
	touched   string              // id of the finding the last Process opened or updated
	Stats     Stats
}

type roleKey struct{ account, role string }

func (k roleKey) clone() roleKey { return roleKey{strings.Clone(k.account), strings.Clone(k.role)} }

type fnKey struct{ account, role, fn string }

type roleFact struct {
	lambda   bool
	lastSeen time.Time // event time, when lambda
	checked  time.Time // wall time of the store read, when !lambda
}

type pending struct {
	f   Finding
	new bool
}

// negativeTTL is how long (wall time) "this role is not a Lambda role" is believed without
// asking the store again: another container may learn the role meanwhile.
const negativeTTL = 5 * time.Minute

// New returns a detector. asns may be nil.
func New(cfg Config, store Store, ranges RangeLookup, asns ASNLookup) (*Detector, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("detect: %w", err)
	}
	if asns == nil {
		asns = (*asn.DB)(nil)
	}
	t := new(bart.Lite)
	for _, p := range cfg.Trusted {
		t.Insert(p)
	}
	return &Detector{
		cfg: cfg, store: store, ranges: ranges, asns: asns, trusted: t, now: time.Now,
		inv:       inventory{},
		invLoaded: map[string]bool{},
		accounts:  map[string]time.Time{},
		roles:     map[roleKey]roleFact{},
		fns:       map[fnKey]time.Time{},
		fnRegion:  map[fnKey]string{},
		written:   map[fact]bool{},
		dirty:     map[string]*pending{},
		open:      map[string]string{},
	}, nil
}

// Process decides on one record and learns from it. Findings it opens or updates are held
// until Flush. An error wraps ErrStore: the record must be retried.
func (d *Detector) Process(ctx context.Context, r *cloudtrail.Record) error {
	d.Stats.Records++
	d.touched = ""
	t := r.Time
	if err := d.observeAccount(ctx, r.Account(), t); err != nil {
		return err
	}
	if ia := r.Identity.Account(); ia != r.Account() {
		if err := d.observeAccount(ctx, ia, t); err != nil {
			return err
		}
	}
	where := d.classify(r.Addr)
	if where == Trusted {
		d.Stats.Trusted++
	}
	if err := d.learn(ctx, r, where); err != nil {
		return err
	}
	id := &r.Identity
	serviceCall := id.InvokedBy != "" || id.Type == cloudtrail.IdentityAWSService
	if serviceCall {
		return nil // AWS calling on the role's behalf (DESIGN §3)
	}
	lambdaRole := false
	if id.Type == cloudtrail.IdentityAssumedRole {
		var err error
		if lambdaRole, err = d.isLambdaRole(ctx, roleAccount(id), id.RoleName(), t); err != nil {
			return err
		}
	}
	switch where {
	case Outside:
		d.Stats.Outside++
		if lambdaRole && id.Temporary() {
			return d.outside(ctx, r)
		}
		return d.knownASN(ctx, r, lambdaRole)
	case Trusted:
		return d.knownASN(ctx, r, lambdaRole)
	case AWS, Private:
		if lambdaRole && id.Temporary() {
			if err := d.insideUse(ctx, r); err != nil {
				return err
			}
			if where == AWS && d.cfg.CrossRegion {
				return d.crossRegion(ctx, r)
			}
		}
	}
	return nil
}

// Touched returns the id of the finding the last Process opened or updated, or "". A
// caller that must fail the inputs of a finding Security Hub refused uses it.
func (d *Detector) Touched() string { return d.touched }

// roleAccount is the account of the role behind a session.
func roleAccount(id *cloudtrail.Identity) string {
	if id.IssuerAccount != "" {
		return id.IssuerAccount
	}
	if a := cloudtrail.AccountFromARN(id.IssuerARN); a != "" {
		return a
	}
	return id.Account()
}

// observeAccount records when an account was first observed (activation, DESIGN §5).
func (d *Detector) observeAccount(ctx context.Context, account string, t time.Time) error {
	if account == "" {
		return nil
	}
	first, ok := d.accounts[account]
	if ok && !t.Before(first) {
		return nil
	}
	key := keyAccount + account
	if !ok {
		if err := d.loadInventory(ctx, account, t); err != nil {
			return err
		}
		var v struct{ First time.Time }
		found, err := d.getJSON(ctx, key, t, &v)
		if err != nil {
			return err
		}
		if found && !t.Before(v.First) {
			d.accounts[strings.Clone(account)] = v.First
			return nil
		}
	}
	// First sighting, or an earlier one than we knew (a backfill of older logs).
	if err := d.putJSON(ctx, key, struct{ First time.Time }{t}, time.Time{}); err != nil {
		return err
	}
	d.accounts[strings.Clone(account)] = t
	return nil
}

// active reports whether an account has been observed for the activation period at t.
func (d *Detector) active(account string, t time.Time) bool {
	first, ok := d.accounts[account]
	return ok && !first.After(t.Add(-d.cfg.Activation))
}

// knownASN records the ASN of a call from a public address outside AWS by one of the
// account's people (not a Lambda role's session): it makes that ASN "known" (title 3).
func (d *Detector) knownASN(ctx context.Context, r *cloudtrail.Record, lambdaRole bool) error {
	switch r.Identity.Type {
	case cloudtrail.IdentityAWSService, cloudtrail.IdentityAWSAccount, "":
		return nil
	}
	if lambdaRole {
		return nil // a Lambda's role, whoever holds it, never makes an ASN known
	}
	info, ok := d.asns.Lookup(r.Addr)
	if !ok {
		return nil
	}
	account := r.Identity.Account()
	if account == "" {
		account = r.Account()
	}
	return d.touch(ctx, fact{keyASN, account, strconv.FormatUint(uint64(info.Number), 10), ""}, r.Time, struct {
		Seen time.Time
		Org  string
	}{r.Time, info.Org})
}

// insideUse records that a Lambda role session's key was used from inside AWS (title 4).
func (d *Detector) insideUse(ctx context.Context, r *cloudtrail.Record) error {
	key := fact{keyInside, r.Identity.AccessKeyID, "", ""}
	if d.writtenToday(key, r.Time) {
		return nil
	}
	// Once a key a day: if Lambda issued this key, its session name is the function (unless
	// that function is known already).
	account, role, sess := roleAccount(&r.Identity), r.Identity.RoleName(), r.Identity.SessionName()
	if sess != "" && !strings.HasPrefix(sess, "awslambda_") && !d.knownFunction(account, role, sess, r.Time) {
		var is issued
		found, err := d.getJSON(ctx, keyIssued+r.Identity.AccessKeyID, r.Time, &is)
		if err != nil {
			return err
		}
		if found && is.Lambda {
			if err := d.learnFunction(ctx, account, role, sess, is.Region, r.Time); err != nil {
				return err
			}
		}
	}
	return d.touch(ctx, key, r.Time, Sighting{At: r.Time, IP: r.SourceIP})
}

// touch writes a baseline fact at most once per key per event-time day, to expire after
// the training period (DESIGN §9: aggregated baseline writes).
func (d *Detector) touch(ctx context.Context, key fact, t time.Time, v any) error {
	if d.writtenToday(key, t) {
		return nil
	}
	if err := d.putJSON(ctx, key.String(), v, t.Add(d.cfg.Training)); err != nil {
		return err
	}
	d.written[key.clone()] = true
	return nil
}

// writtenToday reports whether key was written on t's day (event time). A record of an
// earlier day than the newest seen (logs replayed out of order) is always written.
func (d *Detector) writtenToday(key fact, t time.Time) bool {
	day := t.Unix() / 86400
	switch {
	case day > d.day:
		d.day = day
		clear(d.written)
	case day < d.day:
		return false
	}
	return d.written[key]
}

// fact names a baseline key without building its string: the hot path looks facts up in
// memory far more often than it writes them.
type fact struct{ prefix, a, b, c string }

// clone copies the fact's strings: record strings share their record's bytes, which a map
// key would otherwise keep alive.
func (f fact) clone() fact {
	return fact{f.prefix, strings.Clone(f.a), strings.Clone(f.b), strings.Clone(f.c)}
}

func (f fact) String() string {
	s := f.prefix + f.a
	for _, p := range []string{f.b, f.c} {
		if p != "" {
			s += "#" + p
		}
	}
	return s
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
	d.Stats.StoreWrites++
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("detect: encode %s: %w", key, err)
	}
	if err := d.store.Put(ctx, key, b, expires); err != nil {
		return fmt.Errorf("%w: put %s: %w", ErrStore, key, err)
	}
	return nil
}
