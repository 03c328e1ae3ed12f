package flow

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/outsider-sec/outsider/pkg/detect"
)

// Mailer sends one email per finding, whichever worker or run sees it first: a conditional
// claim in the store decides who sends, and a mark says it went. The Lambda sends through
// SNS, the replay's email format prints; both claim alike.
type Mailer struct {
	Store detect.Store
	Send  func(context.Context, detect.Finding) error
	// SendUpdate emails what is new in a finding already emailed: access keys and source
	// addresses the earlier emails did not name. nil: no update emails.
	SendUpdate func(ctx context.Context, f detect.Finding, newKeys, newSources []string) error
	Now        func() time.Time // wall clock; nil: time.Now
	// MinSeverity is the lowest severity label emailed ("": every finding); a finding
	// below it is in Security Hub only.
	MinSeverity string

	once   sync.Once
	worker string
}

// keyNotified marks a finding whose email went out.
const keyNotified = "notify#"

// IsEmailKey reports whether key holds a finding's email claim (for tests and tools).
func IsEmailKey(key string) bool { return strings.HasPrefix(key, keyNotified) }

// EmailLease is how long a claim on an email holds without a sent mark. A message whose
// email another worker has claimed fails and comes back; if that worker died between its
// claim and the send, the redelivery takes the claim over. So the lease is longer than an
// invocation (the stack's function timeout, 2 minutes) and shorter than the queue's
// visibility timeout (12 minutes): the first redelivery always finds it passed (DESIGN §8).
const EmailLease = 5 * time.Minute

// ErrClaimedElsewhere fails a message whose finding's email another worker claimed and has
// not marked sent: the message comes back after the lease, and the email is sent then by
// whoever holds it — never dropped because someone else said they would send it.
var ErrClaimedElsewhere = errors.New("flow: the finding's email is claimed by another worker and not sent yet; retried after the lease")

// keepMarks is how long a finding's mark is kept after its window opened.
const keepMarks = 90 * 24 * time.Hour

// emailClaim is the value of a claim on a finding's email, and of its sent mark.
type emailClaim struct {
	By   string `json:"claimedBy,omitempty"` // the worker
	At   int64  `json:"at,omitempty"`        // wall time of the claim or of the last email, Unix seconds
	Sent bool   `json:"sent,omitempty"`
	// In a sent mark: the keys and source addresses the emails named so far.
	Keys []string `json:"keys,omitempty"`
	IPs  []string `json:"ips,omitempty"`
}

var sentMark = []byte(`{"sent":true}`)

// UpdateEvery is the least time between two emails of one finding: an update (a new key,
// a new source address) is emailed at most once an hour; what is new meanwhile waits for
// the finding's next change after the hour.
const UpdateEvery = time.Hour

// markOf is the sent mark of an email that named keys and ips, sent at now.
func markOf(keys, ips []string, now time.Time) []byte {
	b, _ := json.Marshal(emailClaim{Sent: true, At: now.Unix(), Keys: keys, IPs: ips})
	return b
}

// missing returns the items of have that known lacks.
func missing(have, known []string) []string {
	var out []string
	for _, h := range have {
		if !slices.Contains(known, h) {
			out = append(out, h)
		}
	}
	return out
}

// isSent reports whether a claim's value is the sent mark.
func isSent(b []byte) bool {
	var c emailClaim
	return json.Unmarshal(b, &c) == nil && c.Sent
}

// Mail sends f's email unless it went already; sent tells whether this call sent it. A
// live claim by another worker is ErrClaimedElsewhere (the message is retried). On a send
// error the claim is given back, so that a retry sends it. The sent mark is written before
// Mail returns: a message is never reported done on a mark that lives only in memory.
func (m *Mailer) Mail(ctx context.Context, f detect.Finding) (sent bool, err error) {
	if !detect.SeverityAtLeast(f.Severity, m.MinSeverity) {
		return false, nil
	}
	key := keyNotified + f.ID
	keep := f.PeriodStart.Add(keepMarks)
	mine, won, err := m.claim(ctx, key, f.PeriodStart, keep)
	if err != nil {
		return false, err
	}
	if !won {
		return m.update(ctx, f, key, mine, keep) // mine is the sent mark, as read
	}
	if err := m.Send(ctx, f); err != nil {
		m.Store.Put(ctx, key, []byte(`{}`), time.Unix(1, 0))
		return false, err
	}
	mark := markOf(f.AccessKeys, f.SourceIPs(), m.now())
	// From our claim to the mark, at once, whatever the key holds by then (unless it says
	// sent already). Should this fail, the email went but the message fails: its
	// redelivery finds our claim, and after the lease sends again (a second email rather
	// than none, as when SNS's answer is lost).
	old := mine
	for range 3 {
		ok, err := m.Store.Swap(ctx, key, old, mark, keep)
		if err != nil {
			return true, fmt.Errorf("flow: email sent, its mark not written: %w", err)
		}
		if ok {
			return true, nil
		}
		cur, found, err := m.Store.Get(ctx, key, f.PeriodStart)
		if err != nil {
			return true, fmt.Errorf("flow: email sent, its mark not written: %w", err)
		}
		if found && isSent(cur) {
			return true, nil
		}
		old = nil
		if found {
			old = cur
		}
	}
	return true, fmt.Errorf("flow: email sent, its mark not written: the key kept changing")
}

// update emails what is new in a finding whose first email went: keys and source
// addresses no earlier email named, at most once every UpdateEvery. The hour's email is
// claimed like a first one (one worker sends it); the finding's mark then names what was
// said. Should that last write be lost, the next hour's update says it again.
func (m *Mailer) update(ctx context.Context, f detect.Finding, key string, cur []byte, keep time.Time) (bool, error) {
	if m.SendUpdate == nil {
		return false, nil
	}
	var c emailClaim
	if json.Unmarshal(cur, &c) != nil || !c.Sent {
		return false, nil
	}
	now := m.now()
	if c.At == 0 && c.Keys == nil && c.IPs == nil {
		// A mark from before updates were emailed: what the finding holds now counts as
		// said, or every old finding would send an update at once.
		_, err := m.Store.Swap(ctx, key, cur, markOf(f.AccessKeys, f.SourceIPs(), now), keep)
		return false, err
	}
	keys, ips := missing(f.AccessKeys, c.Keys), missing(f.SourceIPs(), c.IPs)
	if len(keys)+len(ips) == 0 || now.Sub(time.Unix(c.At, 0)) < UpdateEvery {
		return false, nil
	}
	slot := key + "#" + strconv.FormatInt(now.Unix()/int64(UpdateEvery/time.Second), 10)
	mine, won, err := m.claim(ctx, slot, f.PeriodStart, keep)
	if err != nil || !won {
		return false, err
	}
	if err := m.SendUpdate(ctx, f, keys, ips); err != nil {
		m.Store.Put(ctx, slot, []byte(`{}`), time.Unix(1, 0))
		return false, err
	}
	if _, err := m.Store.Swap(ctx, slot, mine, sentMark, keep); err != nil {
		return true, fmt.Errorf("flow: update email sent, its mark not written: %w", err)
	}
	next := markOf(append(slices.Clone(c.Keys), keys...), append(slices.Clone(c.IPs), ips...), now)
	if _, err := m.Store.Swap(ctx, key, cur, next, keep); err != nil {
		return true, fmt.Errorf("flow: update email sent, the finding's mark not written: %w", err)
	}
	return true, nil
}

// claimWait is how long a worker waits for another's live claim to turn into a sent mark
// before failing its message: the other worker is usually sending at that moment.
var claimWait = 2 * time.Second

// claim claims the right to send a finding's email: a conditional write that one worker
// wins; a claim left by a worker that died unsent is taken over after EmailLease. It
// returns the claim written, to turn into the sent mark; when the email went already, the
// sent mark it read (what an update compares with), and false.
func (m *Mailer) claim(ctx context.Context, key string, periodStart, keep time.Time) ([]byte, bool, error) {
	mine, _ := json.Marshal(emailClaim{By: m.nonce(), At: m.now().Unix()})
	won, err := m.Store.Claim(ctx, key, mine, periodStart, keep)
	if err != nil || won {
		return mine, won, err
	}
	cur, ok, err := m.Store.Get(ctx, key, periodStart)
	switch {
	case err != nil:
		return nil, false, err
	case !ok:
		// Claimed, then given back or expired between our two reads: claim again.
		won, err := m.Store.Swap(ctx, key, nil, mine, keep)
		if err == nil && !won {
			err = ErrClaimedElsewhere
		}
		return mine, won, err
	}
	var c emailClaim
	switch {
	case json.Unmarshal(cur, &c) != nil || c.Sent:
		return cur, false, nil
	case c.By == m.nonce():
		return cur, true, nil // our own claim, whose answer was lost
	case m.now().Sub(time.Unix(c.At, 0)) < EmailLease:
		// Another worker is sending it: wait a little for its mark, then give up.
		for waited := time.Duration(0); waited < claimWait; waited += claimWait / 10 {
			select {
			case <-ctx.Done():
				return nil, false, ErrClaimedElsewhere
			case <-time.After(claimWait / 10):
			}
			cur, ok, err := m.Store.Get(ctx, key, periodStart)
			if err != nil {
				return nil, false, err
			}
			if ok && isSent(cur) {
				return cur, false, nil
			}
		}
		// Who holds it and since when, for whoever reads the batch's log line.
		return nil, false, fmt.Errorf("%w (%s: claimed by worker %.8s %s ago)", ErrClaimedElsewhere, key, c.By, m.now().Sub(time.Unix(c.At, 0)).Round(time.Second))
	}
	won, err = m.Store.Swap(ctx, key, cur, mine, keep)
	if err == nil && !won {
		err = ErrClaimedElsewhere // another worker took it over first
	}
	return mine, won, err
}

// nonce is this worker's name in its claims.
func (m *Mailer) nonce() string {
	m.once.Do(func() {
		var b [16]byte
		rand.Read(b[:])
		m.worker = fmt.Sprintf("%x", b)
	})
	return m.worker
}

func (m *Mailer) now() time.Time {
	if m.Now != nil {
		return m.Now()
	}
	return time.Now()
}
