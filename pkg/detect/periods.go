package detect

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	json "github.com/goccy/go-json"
)

// The dedup periods are fixed: consecutive intervals of the dedup length counted from
// Monday 1970-01-05T00:00:00Z (for 7 days, the ISO weeks of UTC). A call's period is a
// function of its time alone, so that no order of delivery, race between workers, restart
// or backfill can split, merge or move findings: two workers that see the same theft
// write the same finding.
var periodEpoch = time.Date(1970, 1, 5, 0, 0, 0, 0, time.UTC).Unix()

// periodOf returns the start of the dedup period holding t.
func (d *Detector) periodOf(t time.Time) time.Time {
	w := int64(d.cfg.Dedup / time.Second)
	off := t.Unix() - periodEpoch
	q := off / w
	if off%w < 0 {
		q--
	}
	return time.Unix(periodEpoch+q*w, 0).UTC()
}

// findingExpires: a finding lives as long as a call can still join it (a late delivery, a
// backfill within the training period) and as long as its calls' marks do.
func (d *Detector) findingExpires(start time.Time) time.Time {
	return start.Add(d.cfg.Dedup + d.cfg.Training)
}

// pending is a finding changed since the last flush: its value, the bytes it was read
// as (the condition of its write), and the calls folded into it since.
type pending struct {
	key    string
	f      Finding
	stored []byte
	uses   []use
	new    bool
	ids    callSet // f's calls, built at the first fold
}

// fold merges u into the finding and reports whether it was a call not yet counted.
func (p *pending) fold(u use, max int) bool {
	if p.ids == nil {
		p.ids = newCallSet(&p.f)
	}
	if !p.f.merge(u, max, p.ids) {
		return false
	}
	p.uses = append(p.uses, u)
	return true
}

func findingKey(f Finding) string {
	return f.Account + "#" + f.SubjectKind + "#" + f.Subject + "#" + f.Title.Code()
}

func findingStoreKey(fk string, start time.Time) string {
	return keyFinding + fk + "#" + strconv.FormatInt(start.Unix(), 10)
}

// callKey identifies a call: (recipientAccountId, eventID). One account's eventID never
// stands for another's.
func callKey(recipient, eventID string) string { return keyCall + recipient + "#" + eventID }

// readFinding reads the finding stored under key, with the bytes it was read as.
func (d *Detector) readFinding(ctx context.Context, key string) (Finding, []byte, bool, error) {
	var f Finding
	d.Stats.StoreReads++
	b, found, err := d.store.Get(ctx, key, time.Time{})
	if err != nil {
		return f, nil, false, fmt.Errorf("%w: get %s: %w", ErrStore, key, err)
	}
	if !found {
		return f, nil, false, nil
	}
	if err := json.Unmarshal(b, &f); err != nil {
		return f, nil, false, fmt.Errorf("%w: %s holds a bad value: %w", ErrStore, key, err)
	}
	if f.Revised.IsZero() && f.Count > 0 {
		// Written before versions were dated: it was imported with its last call's time.
		f.Revised = f.LastSeen
	}
	return f, b, true, nil
}

// held returns the finding under key as this batch holds it, reading it from the store
// the first time; nil when there is none.
func (d *Detector) held(ctx context.Context, key string) (*pending, error) {
	if p, ok := d.pending[key]; ok {
		return p, nil
	}
	cur, b, found, err := d.readFinding(ctx, key)
	if err != nil || !found {
		return nil, err
	}
	return d.enqueue(&pending{key: key, f: cur, stored: b}), nil
}

// enqueue holds a finding until the next flush.
func (d *Detector) enqueue(p *pending) *pending {
	d.pending[p.key] = p
	d.order = append(d.order, p.key)
	return p
}

// countedIn returns the store key of the finding a call was counted in already (a
// redelivery, maybe decided otherwise the first time), or "".
func (d *Detector) countedIn(ctx context.Context, recipient, eventID string) (string, error) {
	if eventID == "" {
		return "", nil
	}
	key := callKey(recipient, eventID)
	d.Stats.StoreReads++
	b, ok, err := d.store.Get(ctx, key, time.Time{})
	if err != nil || !ok {
		if err != nil {
			return "", fmt.Errorf("%w: get %s: %w", ErrStore, key, err)
		}
		return "", nil
	}
	fk, err := strconv.Unquote(string(b))
	if err != nil || !strings.HasPrefix(fk, keyFinding) {
		return "", fmt.Errorf("%w: %s holds a bad value", ErrStore, key)
	}
	return fk, nil
}

// CountedIn returns the finding a call — (recipientAccountId, eventID) — was counted in,
// if any.
func (d *Detector) CountedIn(ctx context.Context, recipient, eventID string) (Finding, bool, error) {
	key, err := d.countedIn(ctx, recipient, eventID)
	if err != nil || key == "" {
		return Finding{}, false, err
	}
	f, _, found, err := d.readFinding(ctx, key)
	return f, found, err
}

// Stored returns f's version in the store now: another worker may have written a later
// one since.
func (d *Detector) Stored(ctx context.Context, f Finding) (Finding, bool, error) {
	cur, _, found, err := d.readFinding(ctx, findingStoreKey(findingKey(f), f.PeriodStart))
	return cur, found, err
}

// again hands on, unchanged, the finding a redelivered call was counted in: its import
// and email may be what failed the first time.
func (d *Detector) again(ctx context.Context, key string) error {
	d.Stats.Redelivered++
	p, err := d.held(ctx, key)
	if p == nil {
		return err
	}
	d.touched = p.f.ID
	return nil
}

// record counts a call in the finding of its period, opening it when there is none.
func (d *Detector) record(ctx context.Context, f Finding, u use) error {
	f.bound()
	u.bound()
	if key, err := d.countedIn(ctx, u.recipient, u.eventID); err != nil || key != "" {
		if err != nil {
			return err
		}
		return d.again(ctx, key)
	}
	start := d.periodOf(u.at)
	p, err := d.findingAt(ctx, f, findingKey(f), start, u.at)
	if err != nil {
		return err
	}
	d.fold(p, u)
	return nil
}

// findingAt returns the finding of the period at start, read from the store, or created
// (with the presigned uses its period already holds) when there is none. Creating it is a
// conditional write: two workers that open the same finding agree on one.
func (d *Detector) findingAt(ctx context.Context, f Finding, fk string, start, t time.Time) (*pending, error) {
	key := findingStoreKey(fk, start)
	if p, ok := d.pending[key]; ok {
		return p, nil
	}
	for attempt := 0; attempt < 3; attempt++ {
		cur, b, found, err := d.readFinding(ctx, key)
		if err != nil {
			return nil, err
		}
		if found {
			if err := d.investigate(ctx, &cur, t); err != nil {
				return nil, err
			}
			// A finding with no call yet was opened by a worker that died before its
			// first write: it was never announced, so it is still new.
			return d.enqueue(&pending{key: key, f: cur, stored: b, new: cur.Count == 0}), nil
		}
		n := f
		n.PeriodStart = start
		n.ID = findingID(n.Account, n.SubjectKind, n.Subject, n.Title, start)
		if err := d.investigate(ctx, &n, t); err != nil {
			return nil, err
		}
		b, err = json.Marshal(n)
		if err != nil {
			return nil, fmt.Errorf("detect: encode finding: %w", err)
		}
		d.Stats.StoreClaims++
		won, err := d.store.Swap(ctx, key, nil, b, d.findingExpires(start))
		if err != nil {
			return nil, fmt.Errorf("%w: open %s: %w", ErrStore, key, err)
		}
		if won {
			p := d.enqueue(&pending{key: key, f: n, stored: b, new: true})
			// The presigned uses seen in the period before the finding opened.
			pre, err := d.presignedOf(ctx, presignedKey(f, start))
			if err != nil {
				return nil, err
			}
			for _, u := range pre.uses() {
				p.fold(u, d.cfg.MaxList)
			}
			return p, nil
		}
		// Another worker opened it between our read and our write: read it again.
	}
	return nil, fmt.Errorf("%w: open %s: lost three races in a row", ErrStore, key)
}

func (d *Detector) fold(p *pending, u use) {
	d.touched = p.f.ID
	if !p.fold(u, d.cfg.MaxList) {
		d.Stats.Redelivered++
	}
}

// presignedUses is what a subject's presigned-URL uses in one period were: the calls'
// digests (so that a redelivery adds nothing) and their API names.
type presignedUses struct {
	IDs  []string `json:"ids"`
	APIs []string `json:"apis"`
	At   int64    `json:"at"` // the first use, Unix seconds
}

// maxPresigned bounds the uses a period's ledger remembers.
const maxPresigned = 512

func (p presignedUses) uses() []use {
	var out []use
	for _, api := range p.APIs {
		out = append(out, use{at: time.Unix(p.At, 0).UTC(), name: api, presigned: true, uses: len(p.IDs)})
	}
	return out
}

// presignedKey: pre#ACCOUNT#KIND#SUBJECT#PERIOD, for every title of the subject.
func presignedKey(f Finding, start time.Time) string {
	return keyPresigned + f.Account + "#" + f.SubjectKind + "#" + f.Subject + "#" + strconv.FormatInt(start.Unix(), 10)
}

func (d *Detector) presignedOf(ctx context.Context, key string) (presignedUses, error) {
	var p presignedUses
	_, err := d.getJSON(ctx, key, time.Time{}, &p)
	return p, err
}

// presigned lists a presigned-URL use of a function's token (an S3 object operation
// signed by query string) on every finding of the same subject whose period holds it,
// whatever its title, and in the period's ledger, which findings opened later read. It
// never opens a finding and is not counted as a call.
func (d *Detector) presigned(ctx context.Context, f Finding, u use) error {
	f.bound()
	u.bound()
	start := d.periodOf(u.at)
	key := presignedKey(f, start)
	id := eventDigest(u.recipient + "#" + u.eventID)
	n := 0
	for attempt := 0; ; attempt++ {
		var p presignedUses
		d.Stats.StoreReads++
		old, found, err := d.store.Get(ctx, key, time.Time{})
		if err != nil {
			return fmt.Errorf("%w: get %s: %w", ErrStore, key, err)
		}
		if found {
			if err := json.Unmarshal(old, &p); err != nil {
				return fmt.Errorf("%w: %s holds a bad value: %w", ErrStore, key, err)
			}
		} else {
			old = nil
		}
		n = len(p.IDs)
		if slices.Contains(p.IDs, id) || len(p.IDs) >= maxPresigned {
			break // a redelivery, or a ledger that is full: the APIs it lists stand
		}
		n++
		p.IDs = append(p.IDs, id)
		if !slices.Contains(p.APIs, u.name) && len(p.APIs) < d.cfg.MaxList {
			p.APIs = append(p.APIs, u.name)
		}
		if p.At == 0 || u.at.Unix() < p.At {
			p.At = u.at.Unix()
		}
		b, _ := json.Marshal(p)
		d.Stats.StoreClaims++
		won, err := d.store.Swap(ctx, key, old, b, d.findingExpires(start))
		if err != nil {
			return fmt.Errorf("%w: put %s: %w", ErrStore, key, err)
		}
		if won {
			break
		}
		if attempt == 5 {
			return fmt.Errorf("%w: put %s: lost six races in a row", ErrStore, key)
		}
	}
	u.presigned, u.uses = true, n
	fk := f.Account + "#" + f.SubjectKind + "#" + f.Subject + "#"
	for _, s := range TitleSpecs {
		p, err := d.held(ctx, findingStoreKey(fk+s.Code, start))
		if err != nil {
			return err
		}
		if p != nil && p.fold(u, d.cfg.MaxList) {
			d.touched = p.f.ID
		}
	}
	return nil
}

// investigate answers the first two investigative questions for a finding: is the role
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
		for _, e := range d.facts {
			if k := e.key; k.prefix == keyFunction && k.a == f.Account && k.b == f.Role && d.knownFunctionInMemory(k.a, k.b, k.c, t) && !slices.Contains(fns, k.c) {
				fns = append(fns, k.c)
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
			found, err := d.getJSON(ctx, fact{keyFnRole, f.Account, f.Function, ""}.String(), time.Time{}, &fr)
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
	if _, err := d.getJSON(ctx, fact{keyAssumers, f.Account, f.Role, ""}.String(), time.Time{}, &list); err != nil {
		return err
	}
	// Who assumed the role within the training period before the finding's time.
	f.AssumedBy = slices.DeleteFunc(list, func(a Assumption) bool { return a.At.After(t) || a.At.Before(t.Add(-d.cfg.Training)) })
	return nil
}

// Flush writes the facts and findings changed since the last Flush and returns the
// findings, in the order they were first changed. New is true for a finding opened since
// the last Flush. A finding's write is conditional on what was read: when another worker
// updated it meanwhile, the calls folded here are folded again into its value (a call is
// counted once, by its eventID) and the write is tried again.
// Every fact is written, exactly as this detector knows it.
func (d *Detector) Flush(ctx context.Context) ([]Change, error) { return d.flush(ctx, allFacts) }

// FlushBatch is Flush for a worker that goes on: a fact whose only change is a later last
// sighting, less than lastSeenSlack ahead of the store's, stays in memory until it moves
// further, changes otherwise or a Flush.
func (d *Detector) FlushBatch(ctx context.Context) ([]Change, error) { return d.flush(ctx, someFacts) }

// Which facts a flush writes.
const (
	someFacts = iota
	allFacts
)

func (d *Detector) flush(ctx context.Context, facts int) ([]Change, error) {
	defer func() {
		// Who issued a key never changes once known; that a key is unknown may change
		// (another worker saw its AssumeRole), so those answers are asked again.
		for _, k := range d.unknownKeys {
			if is := d.issuedMemo[k]; is == nil || is.owner {
				delete(d.issuedMemo, k)
			}
		}
		d.unknownKeys = d.unknownKeys[:0]
	}()
	if err := d.writeIssuers(ctx, facts == allFacts); err != nil {
		d.dropPending()
		return nil, err
	}
	if err := d.flushFacts(ctx, facts == allFacts); err != nil {
		d.dropPending()
		return nil, err
	}
	out := make([]Change, 0, len(d.order))
	for _, key := range d.order {
		p := d.pending[key]
		read := p.stored
		if err := d.writeFinding(ctx, p); err != nil {
			d.dropPending()
			return nil, err
		}
		if p.f.Count == 0 {
			// Opened by a worker that has not written its first call yet (this one listed a
			// presigned use in it): that worker hands it on, counted.
			continue
		}
		out = append(out, Change{Finding: p.f, New: p.new, Again: !p.new && string(p.stored) == string(read)})
	}
	// The calls counted, so that a redelivery decided otherwise is not counted twice.
	for _, key := range d.order {
		p := d.pending[key]
		for _, u := range p.uses {
			if u.eventID != "" && !u.presigned {
				key := callKey(u.recipient, u.eventID)
				if err := d.store.Put(ctx, key, []byte(strconv.Quote(p.key)), d.findingExpires(p.f.PeriodStart)); err != nil {
					d.dropPending()
					return nil, fmt.Errorf("%w: put %s: %w", ErrStore, key, err)
				}
				d.Stats.StoreWrites++
			}
		}
	}
	for _, c := range out {
		switch {
		case c.New:
			d.Stats.Created++
		case !c.Again:
			d.Stats.Updated++
		}
	}
	d.dropPending()
	return out, nil
}

func (d *Detector) dropPending() {
	clear(d.pending)
	d.order = d.order[:0]
}

func (d *Detector) writeFinding(ctx context.Context, p *pending) error {
	for attempt := 0; attempt < 6; attempt++ {
		b, err := json.Marshal(p.f)
		if err != nil {
			return fmt.Errorf("detect: encode finding: %w", err)
		}
		if string(b) == string(p.stored) {
			return nil
		}
		// A new version: dated after the one it replaces (p.f.Revised is that one's).
		prev := p.f.Revised
		p.f.revise()
		if b, err = json.Marshal(p.f); err != nil {
			return fmt.Errorf("detect: encode finding: %w", err)
		}
		d.Stats.StoreWrites++
		ok, err := d.store.Swap(ctx, p.key, p.stored, b, d.findingExpires(p.f.PeriodStart))
		if err != nil {
			return fmt.Errorf("%w: write %s: %w", ErrStore, p.key, err)
		}
		if ok {
			p.stored = b
			return nil
		}
		p.f.Revised = prev
		// Another worker updated it: fold our calls into its value.
		f, cur, found, err := d.readFinding(ctx, p.key)
		if err != nil {
			return err
		}
		if !found {
			f = p.f
			f.resetCounts()
		} else if f.Count > 0 {
			// Another worker counted a call in it first, and hands it on as new: this one
			// updates it. (A version with no call yet is an opener's claim, maybe with
			// presigned uses another worker listed in it: whoever counts first opens it.)
			p.new = false
		}
		f.Attached, f.AttachedDetail, f.AssumedBy = p.f.Attached, p.f.AttachedDetail, p.f.AssumedBy
		ids := newCallSet(&f)
		for _, u := range p.uses {
			f.merge(u, d.cfg.MaxList, ids)
		}
		p.f, p.stored, p.ids = f, cur, ids
	}
	return fmt.Errorf("%w: write %s: lost six races in a row", ErrStore, p.key)
}
