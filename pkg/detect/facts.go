package detect

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"time"

	json "github.com/goccy/go-json"
)

// A baseline fact (a Lambda role, a function, a key seen inside AWS, an ASN the account's
// people use) answers one question for any event time t: was it seen in [t − training, t]?
//
// It is kept as its sightings per UTC day: the first and the last of each day. That answers
// the question exactly, to the second, for any training period of a day or more: a sighting
// in the window on t's own day means that day's first is in it; on an earlier day, that
// day's last is. A later sighting never changes an answer about an earlier time, so facts
// learned out of order, from a backfill or a late delivery, are merged, never overwritten.
type sightings [][2]int64 // per day, sorted: first and last sighting, Unix seconds

const daySeconds = 24 * 60 * 60

// maxDays bounds a fact's days: more than a year of daily use, a few kilobytes.
const maxDays = 400

// seen reports whether there is a sighting in [t − training, t].
func (s sightings) seen(t, training int64) bool {
	from := t - training
	// The newest days decide: walk back from the end.
	for i := len(s) - 1; i >= 0; i-- {
		first, last := s[i][0], s[i][1]
		if last < from {
			return false
		}
		if first <= t && first >= from || last <= t && last >= from {
			return true
		}
	}
	return false
}

// latest returns the newest sighting at or before t, or 0.
func (s sightings) latest(t int64) int64 {
	for i := len(s) - 1; i >= 0; i-- {
		if s[i][1] <= t {
			return s[i][1]
		}
		if s[i][0] <= t {
			return s[i][0] // the day's last is after t; its first is the newest known before
		}
	}
	return 0
}

// change is what a sighting did to a fact.
type change uint8

const (
	unchanged change = iota
	// later: only the last sighting of the fact's newest day moved later. It changes
	// answers a training period from now, and only by as much as it moved: such a change
	// waits (see lastSeenSlack) instead of being written every batch.
	later
	changed // anything else: a new day, an earlier first sighting, a new value
)

// add records a sighting at t and reports what it changed.
func (s *sightings) add(t int64) change {
	d := floorDay(t)
	i, found := slices.BinarySearchFunc(*s, d, func(e [2]int64, d int64) int { return compareInt(floorDay(e[0]), d) })
	if found {
		e := &(*s)[i]
		switch {
		case t < e[0]:
			e[0] = t
		case t > e[1]:
			e[1] = t
			if i == len(*s)-1 {
				return later
			}
		default:
			return unchanged
		}
		return changed
	}
	*s = slices.Insert(*s, i, [2]int64{t, t})
	if len(*s) > maxDays {
		*s = slices.Delete(*s, 0, len(*s)-maxDays)
	}
	return changed
}

// merge adds every sighting of o and reports whether s changed.
func (s *sightings) merge(o sightings) bool {
	changed := false
	for _, e := range o {
		a := s.add(e[0])
		b := s.add(e[1])
		changed = changed || a != unchanged || b != unchanged
	}
	return changed
}

func (s sightings) newest() int64 {
	if len(s) == 0 {
		return 0
	}
	return s[len(s)-1][1]
}

func floorDay(t int64) int64 {
	d := t / daySeconds * daySeconds
	if t < 0 && t%daySeconds != 0 {
		d -= daySeconds
	}
	return d
}

func compareInt(a, b int64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// regionSightings is a function's sightings per region ("" where the region is unknown),
// sorted by region. A function is seen in one region or a few: looking in a slice of them
// is cheaper than in a map, whose lookup on every function's call, through three pointers
// and a hash, was 4% of a dense replay. It is written as the JSON object a map of them is.
type regionSightings []regionSighting

type regionSighting struct {
	region string
	s      sightings
}

// get returns the region's sightings.
func (rs regionSightings) get(region string) (sightings, bool) {
	for i := range rs {
		if rs[i].region == region {
			return rs[i].s, true
		}
	}
	return nil, false
}

// maxRegions bounds a function's regions: AWS has a few dozen, and a forged history naming
// thousands must not make each sighting a walk of them all. Past it, a new region takes
// the place of the one seen longest ago.
const maxRegions = 64

// set stores the region's sightings, with its own copy of a region new to it.
func (rs *regionSightings) set(region string, s sightings) {
	for i := range *rs {
		if (*rs)[i].region == region {
			(*rs)[i].s = s
			return
		}
	}
	if len(*rs) >= maxRegions {
		oldest := 0
		for i := range *rs {
			if (*rs)[i].s.newest() < (*rs)[oldest].s.newest() {
				oldest = i
			}
		}
		*rs = slices.Delete(*rs, oldest, oldest+1)
	}
	i, _ := slices.BinarySearchFunc(*rs, region, func(e regionSighting, r string) int { return strings.Compare(e.region, r) })
	*rs = slices.Insert(*rs, i, regionSighting{strings.Clone(region), s})
}

// MarshalJSON writes the regions as the map they were kept in before: the same bytes (an
// object with its keys in order, each day's first and last sighting a pair of numbers).
func (rs regionSightings) MarshalJSON() ([]byte, error) {
	b := make([]byte, 0, 2+len(rs)*48)
	b = append(b, '{')
	for i, e := range rs {
		if i > 0 {
			b = append(b, ',')
		}
		if plainName(e.region) {
			b = append(b, '"')
			b = append(b, e.region...)
			b = append(b, '"')
		} else {
			k, err := json.Marshal(e.region) // the escapes the encoder makes
			if err != nil {
				return nil, err
			}
			b = append(b, k...)
		}
		b = append(b, ':')
		if e.s == nil {
			b = append(b, "null"...)
			continue
		}
		b = append(b, '[')
		for j, d := range e.s {
			if j > 0 {
				b = append(b, ',')
			}
			b = append(b, '[')
			b = strconv.AppendInt(b, d[0], 10)
			b = append(b, ',')
			b = strconv.AppendInt(b, d[1], 10)
			b = append(b, ']')
		}
		b = append(b, ']')
	}
	return append(b, '}'), nil
}

// plainName: a name JSON writes as it is, between quotes (a region's: letters, digits,
// dashes).
func plainName(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

func (rs *regionSightings) UnmarshalJSON(b []byte) error {
	var m map[string]sightings
	if err := json.Unmarshal(b, &m); err != nil {
		return err
	}
	*rs = nil
	if m == nil {
		return nil
	}
	*rs = make(regionSightings, 0, len(m))
	for r, s := range m {
		*rs = append(*rs, regionSighting{r, s})
	}
	slices.SortFunc(*rs, func(a, b regionSighting) int { return strings.Compare(a.region, b.region) })
	return nil
}

// factValue is what the store holds for a fact.
type factValue struct {
	Days sightings `json:"d,omitempty"`
	// Regions: for a function, its sightings per region ("" where the region is unknown).
	Regions regionSightings `json:"r,omitempty"`
	// IP: for a key seen inside AWS, the address of its first sighting.
	IP string `json:"ip,omitempty"`
	// First: for an account, its first record (Unix seconds).
	First int64 `json:"first,omitempty"`
}

func (v *factValue) merge(o factValue) bool {
	changed := v.Days.merge(o.Days)
	for _, e := range o.Regions {
		cur, _ := v.Regions.get(e.region)
		if cur.merge(e.s) {
			changed = true
		}
		v.Regions.set(e.region, cur)
	}
	if v.IP == "" && o.IP != "" {
		v.IP, changed = o.IP, true
	}
	if o.First != 0 && (v.First == 0 || o.First < v.First) {
		v.First, changed = o.First, true
	}
	return changed
}

// anyRegion reports whether a function fact was seen, in any region, in [t − training, t].
func (v *factValue) anyRegion(t, training int64) bool {
	for _, e := range v.Regions {
		if e.s.seen(t, training) {
			return true
		}
	}
	return false
}

// newest is the latest sighting of any kind: the fact lapses a training period later.
func (v *factValue) newest() int64 {
	n := max(v.Days.newest(), v.First)
	for _, e := range v.Regions {
		n = max(n, e.s.newest())
	}
	return n
}

// stored is the value as it is written: the days of the last two training periods (and a
// day), which answer exactly for any time from a training period before the newest
// sighting on — a delivery up to a month late, after any restart — so that an item stays
// near a kilobyte whatever its age. Memory keeps every day it saw: a backfill of older
// logs decides on the older days it learns as it goes.
func (v *factValue) stored(training int64) factValue {
	from := floorDay(v.newest()-2*training) - daySeconds
	out := *v
	out.Days = v.Days.since(from)
	if v.Regions != nil {
		out.Regions = make(regionSightings, 0, len(v.Regions))
		for _, e := range v.Regions {
			if s := e.s.since(from); len(s) > 0 {
				out.Regions = append(out.Regions, regionSighting{e.region, s})
			}
		}
	}
	return out
}

// since returns the days whose last sighting is at or after from.
func (s sightings) since(from int64) sightings {
	i := 0
	for i < len(s) && s[i][1] < from {
		i++
	}
	return s[i:]
}

// fact names a baseline key without building its string: the hot path looks facts up in
// memory far more often than it writes them.
type fact struct{ prefix, a, b, c string }

func (f fact) String() string { return string(f.appendKey(nil)) }

// appendKey appends the fact's store key: PREFIX A[#B][#C].
func (f fact) appendKey(b []byte) []byte {
	b = append(append(b, f.prefix...), f.a...)
	for _, p := range [2]string{f.b, f.c} {
		if p != "" {
			b = append(append(b, '#'), p...)
		}
	}
	return b
}

// lookup returns the entry of a fact held in memory, or nil. The map is keyed by the
// store key, built in a scratch buffer: one string to hash, no allocation.
func (d *Detector) lookup(f fact) *factEntry {
	d.keyBuf = f.appendKey(d.keyBuf[:0])
	return d.facts[string(d.keyBuf)]
}

// hold starts holding a fact not held yet, with its own copy of the key: its store key,
// and its parts cut from it (one allocation, not four: a dense history holds tens of
// thousands of new facts a day).
func (d *Detector) hold(f fact) *factEntry {
	// The record's strings are not kept: they share their record's bytes.
	d.keyBuf = f.appendKey(d.keyBuf[:0])
	name := string(d.keyBuf)
	k := fact{prefix: f.prefix} // a constant
	at := len(f.prefix)
	k.a, at = name[at:at+len(f.a)], at+len(f.a)
	if f.b != "" {
		k.b, at = name[at+1:at+1+len(f.b)], at+1+len(f.b)
	}
	if f.c != "" {
		k.c = name[at+1 : at+1+len(f.c)]
	}
	e := &factEntry{key: k, name: name}
	e.v.Days = e.days[:0]
	d.facts[e.name] = e
	return e
}

// factEntry is a fact as this detector holds it: the stored value merged with what it
// saw since.
type factEntry struct {
	key    fact
	name   string // key's string: the store key, and the map's
	v      factValue
	stored []byte    // the bytes last read or written: the condition of the next write
	read   time.Time // wall time of the last read; zero: never read
	dirty  bool
	// written is the newest sighting the store holds (as last read or written); late is
	// set when the entry holds a later last sighting not yet written (see lastSeenSlack).
	written int64
	late    bool
	// For a key seen inside: the function Lambda issued it to, once known (memory only).
	fn, region string
	// days holds v.Days' first two days: most facts are a key's, used for a day or two,
	// and growing the slice from nothing was a tenth of a dense history's allocations.
	days [2][2]int64
}

// maxKeyLife is the longest an STS key is valid: 36 hours (GetSessionToken and
// GetFederationToken's maximum DurationSeconds, 129,600; a role session lasts at most 12
// hours, one obtained by role chaining one hour).
// https://docs.aws.amazon.com/STS/latest/APIReference/API_GetSessionToken.html
// https://docs.aws.amazon.com/STS/latest/APIReference/API_AssumeRole.html
const maxKeyLife = 36 * time.Hour

// negativeTTL is how long (wall time) a fact that does not hold is believed without asking
// the store again: another container may have learned it meanwhile.
const negativeTTL = 5 * time.Minute

// maxFacts bounds the facts held in memory; clean ones are dropped past it.
const maxFacts = 200_000

// maxFactKey bounds a fact's key: real names are far shorter (a role or function name is
// at most 64 characters); a longer one is hostile input and is neither stored nor asked.
const maxFactKey = 512

// entry returns the fact as known: read from the store the first time, and again when
// the answer it holds is negative and older than negativeTTL.
func (d *Detector) entry(ctx context.Context, f fact, holds func(*factValue) bool) (*factEntry, error) {
	if len(f.a)+len(f.b)+len(f.c) > maxFactKey {
		return &factEntry{}, nil
	}
	e := d.lookup(f)
	if e != nil && (holds(&e.v) || d.now().Sub(e.read) < negativeTTL) {
		return e, nil
	}
	if e == nil {
		e = d.hold(f)
	}
	if err := d.load(ctx, e.name, e); err != nil {
		return nil, err
	}
	return e, nil
}

// load merges the stored value into e.
func (d *Detector) load(ctx context.Context, key string, e *factEntry) error {
	d.Stats.StoreReads++
	b, ok, err := d.store.Get(ctx, key, time.Time{})
	if err != nil {
		return fmt.Errorf("%w: get %s: %w", ErrStore, key, err)
	}
	e.read = d.now()
	if !ok {
		e.stored = nil
		return nil
	}
	var v factValue
	if err := json.Unmarshal(b, &v); err != nil {
		return fmt.Errorf("%w: %s holds a bad value: %w", ErrStore, key, err)
	}
	e.stored = b
	e.written = v.newest()
	// What this detector saw and the store did not hold stays dirty, to be written.
	e.v.merge(v)
	return nil
}

// seen reports whether a fact's days hold a sighting in [t − training, t].
func (d *Detector) seen(ctx context.Context, f fact, t time.Time) (bool, *factEntry, error) {
	tr := int64(d.cfg.Training / time.Second)
	ts := t.Unix()
	e, err := d.entry(ctx, f, func(v *factValue) bool { return v.Days.seen(ts, tr) })
	if err != nil {
		return false, nil, err
	}
	return e.v.Days.seen(ts, tr), e, nil
}

// sight records a sighting of a fact. It is written at the next Flush, merged with
// whatever the store holds by then.
// It returns the fact's entry, nil for a key no real record carries.
func (d *Detector) sight(f fact, update func(*factValue) change) (e *factEntry, created bool) {
	if len(f.a)+len(f.b)+len(f.c) > maxFactKey {
		return nil, false
	}
	if e = d.lookup(f); e == nil {
		e, created = d.hold(f), true
	}
	d.update(e, update)
	return e, created
}

// lastSeenSlack bounds how far a fact's last sighting may run ahead of the store's before
// it is written. A hot fact (a busy function's role, seen in every batch) changes only its
// last sighting from batch to batch; writing each of those is most of a busy detector's
// writes and what racing containers collide on. Waiting costs little: the last sighting
// decides only whether the fact still holds a training period later, so another container
// reading the store then may see the fact lapse at most this much early, and only when no
// later sighting was written in between (every new day, earlier first sighting or new
// value is written at once, and this container's memory and a replay's end stay exact).
// An hour keeps a hot fact to at most 25 writes a day per container, instead of one a
// batch, for an error of an hour in thirty days.
const lastSeenSlack = 60 * 60

// update applies a sighting to an entry held, and marks it to be written if it changed
// what a reader of the store would need now.
func (d *Detector) update(e *factEntry, update func(*factValue) change) {
	c := update(&e.v)
	if c == unchanged || e.name == "" {
		return // e.name "": a fact no real record carries (entry), not kept
	}
	if c == later {
		if e.v.newest()-e.written < lastSeenSlack {
			if !e.late && !e.dirty {
				e.late = true
				d.lateFacts = append(d.lateFacts, e)
			}
			return
		}
	}
	if !e.dirty {
		e.dirty = true
		d.dirtyFacts = append(d.dirtyFacts, e)
	}
}

// flushFacts writes the facts changed since the last flush (with all, also those whose
// only change is a later last sighting). A write is conditional on what the detector last
// read: when another worker wrote meanwhile, the two are merged and the write is tried
// again.
func (d *Detector) flushFacts(ctx context.Context, all bool) error {
	// The lists hold entries, not keys: an entry dirty or late is never dropped from
	// memory (evict), so it is the one the map holds for its key.
	// Past the memory bound, facts are dropped once written: the late ones are written too.
	if all = all || len(d.facts) > maxFacts; all {
		for _, e := range d.lateFacts {
			if e.late && !e.dirty {
				e.dirty = true
				d.dirtyFacts = append(d.dirtyFacts, e)
			}
		}
		d.lateFacts = d.lateFacts[:0]
	}
	todo := make([]*factEntry, 0, len(d.dirtyFacts)) // sized once: a dense flush writes tens of thousands
	var held []*factEntry
	for _, e := range d.dirtyFacts {
		if !e.dirty {
			continue
		}
		if exp := e.expires(d.cfg.Training); d.forgotten(exp) {
			// Asked about by no later decision (SetForget): as good as written.
			e.dirty, e.late, e.written = false, false, e.v.newest()
			continue
		} else if !all && d.holdsBack(exp) {
			held = append(held, e)
			continue
		}
		todo = append(todo, e)
	}
	for attempt := 0; len(todo) > 0; attempt++ {
		if attempt == factAttempts {
			d.dirtyFacts = append(todo, held...)
			return fmt.Errorf("%w: write %s: lost %d races in a row", ErrStore, todo[0].name, factAttempts)
		}
		if attempt > 0 {
			// Only the keys that lost are tried again (the store writes the others): a
			// hot key several workers write at once. A random pause, growing, lets the
			// racers fall out of step instead of colliding again on every try; the keys
			// are read again after it, right before the write, so that the pause does
			// not widen the window another worker's write can fall into.
			if err := backoff(ctx, attempt); err != nil {
				d.dirtyFacts = append(todo, held...)
				return fmt.Errorf("%w: write facts: %w", ErrStore, err)
			}
			for _, e := range todo {
				if err := d.load(ctx, e.name, e); err != nil {
					d.dirtyFacts = append(todo, held...)
					return err
				}
			}
		}
		swaps := make([]Swap, len(todo))
		for i, e := range todo {
			v := e.v.stored(int64(d.cfg.Training / time.Second))
			b, err := json.Marshal(&v)
			if err != nil {
				return fmt.Errorf("detect: encode %s: %w", e.name, err)
			}
			swaps[i] = Swap{Key: e.name, Old: e.stored, Value: b, Expires: e.expires(d.cfg.Training)}
		}
		d.Stats.StoreWrites += len(swaps)
		ok, err := d.swapAll(ctx, swaps)
		if err != nil {
			d.dirtyFacts = append(todo, held...)
			return fmt.Errorf("%w: write facts: %w", ErrStore, err)
		}
		var again []*factEntry
		for i, e := range todo {
			if ok[i] {
				e.stored, e.dirty, e.late, e.written = swaps[i].Value, false, false, e.v.newest()
				continue
			}
			again = append(again, e)
		}
		todo = again
	}
	clear(d.dirtyFacts) // the entries written are not kept alive by the list once dropped
	d.dirtyFacts = append(d.dirtyFacts[:0], held...)
	late := d.lateFacts[:0]
	for _, e := range d.lateFacts {
		if e.late {
			late = append(late, e)
		}
	}
	clear(d.lateFacts[len(late):])
	d.lateFacts = late
	d.evict()
	return nil
}

// expires is when the store may forget a fact's item (zero: never).
func (e *factEntry) expires(training time.Duration) time.Time {
	switch e.key.prefix {
	case keyAccount:
		return time.Time{}
	case keyInside:
		// A key answers for itself only while it is valid: no temporary key lives longer
		// than maxKeyLife after it was last seen inside.
		return time.Unix(e.v.newest(), 0).Add(maxKeyLife)
	}
	return time.Unix(e.v.newest(), 0).Add(training)
}

// heldBack: a replay's one detector (SetForget, no other shard reading the store) does
// not write, at a flush that is not its last, what expires within this long past its
// horizon: it answers for it from memory, and by its next flush most of it has expired
// and is never written (a key seen inside lives 36 hours past its last use, and a dense
// replay's flushes are days of event time apart). The embedded store holds such items
// back from its file the same way (store.Bolt's commit). A replay that dies loses them
// with the rest of what it held; replaying its last files learns them again.
const heldBack = 72 * 60 * 60

// forgotten: an item that expires at exp is past the detector's horizon (SetForget): no
// later decision asks about it, and it need not be written.
func (d *Detector) forgotten(exp time.Time) bool {
	return d.forget > 0 && !exp.IsZero() && exp.Unix() < d.clock-d.forget
}

// holdsBack: an item that expires at exp need not be written at this flush (heldBack).
func (d *Detector) holdsBack(exp time.Time) bool {
	return d.forget > 0 && d.owns == nil && !exp.IsZero() && exp.Unix() < d.clock-d.forget+heldBack
}

// evictAge: a fact written and not sighted for this long (event time) is dropped from
// memory once there are more than softFacts; the store answers for it if it is asked again.
// Records come in event-time order give or take hours (a replay's reorder window, a late
// delivery), so an answer about them reads what the store holds, which is exact for any
// time from a training period before its newest sighting on (factValue.stored).
const (
	evictAge  = 6 * 60 * 60
	softFacts = 8192
)

// evict bounds memory by event time: a dense history teaches tens of thousands of keys a
// day, each a fact and an issuer, and holding them all makes the garbage collector the
// detector's main work. Facts past maxFacts go whatever their age.
func (d *Detector) evict() {
	if len(d.facts) > softFacts {
		old := d.clock - evictAge
		all := len(d.facts) > maxFacts
		for k, e := range d.facts {
			if !e.dirty && !e.late && (all || e.v.newest() < old) {
				delete(d.facts, k)
				if e.key.prefix == keyAccount {
					if n, ok := accountNumber(e.key.a); ok && d.accts[n].e == e {
						delete(d.accts, n)
					}
				}
			}
		}
	}
	if len(d.issuedMemo) > softFacts {
		// An expired key's issuer answers nothing for a time at or after its expiry; a
		// late record from before it reads the store again. One not written yet
		// (heldBack) stays until it is past the horizon, which no record reaches.
		old := d.clock
		if d.forget > 0 {
			old -= d.forget
		}
		for k, is := range d.issuedMemo {
			if is != nil && is.Expires.Unix() < old {
				delete(d.issuedMemo, k)
			}
		}
	}
}

// factAttempts is how many times a fact's write is tried against other workers' writes
// of it before its batch fails (and is retried by SQS).
const factAttempts = 12

// backoff waits a random time below 5 ms × 2^attempt (at most 320 ms), or until ctx ends.
func backoff(ctx context.Context, attempt int) error {
	d := time.Duration(rand.Int64N(int64(5*time.Millisecond) << min(attempt, 6)))
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

func (d *Detector) swapAll(ctx context.Context, swaps []Swap) ([]bool, error) {
	if sa, ok := d.store.(SwapAller); ok {
		return sa.SwapAll(ctx, swaps)
	}
	ok := make([]bool, len(swaps))
	for i, s := range swaps {
		var err error
		if ok[i], err = d.store.Swap(ctx, s.Key, s.Old, s.Value, s.Expires); err != nil {
			return nil, err
		}
	}
	return ok, nil
}
