package flow

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
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
	Now   func() time.Time // wall clock; nil: time.Now

	once   sync.Once
	worker string
}

// keyNotified marks a finding whose email went out.
const keyNotified = "notify#"

// IsEmailKey reports whether key holds a finding's email claim (for tests and tools).
func IsEmailKey(key string) bool { return strings.HasPrefix(key, keyNotified) }

// emailLease is how long a claim on an email holds without a sent mark: a worker that died
// between its claim and the send leaves a claim that the next delivery takes over once the
// lease has passed. Longer than any invocation (Lambda's limit is 15 minutes).
const emailLease = 16 * time.Minute

// keepMarks is how long a finding's mark is kept after its window opened.
const keepMarks = 90 * 24 * time.Hour

// emailClaim is the value of a claim on a finding's email.
type emailClaim struct {
	By   string `json:"claimedBy,omitempty"` // the worker
	At   int64  `json:"at,omitempty"`        // wall time of the claim, Unix seconds
	Sent bool   `json:"sent,omitempty"`
}

var sentMark = []byte(`{"sent":true}`)

// Mail sends f's email unless it went already or another worker is sending it; sent tells
// whether this call sent it. On a send error the claim is given back, so that a retry
// sends it.
func (m *Mailer) Mail(ctx context.Context, f detect.Finding) (sent bool, err error) {
	key := keyNotified + f.ID
	keep := f.PeriodStart.Add(keepMarks)
	won, err := m.claim(ctx, key, f.PeriodStart, keep)
	if err != nil || !won {
		return false, err
	}
	if err := m.Send(ctx, f); err != nil {
		m.Store.Put(ctx, key, []byte(`{}`), time.Unix(1, 0))
		return false, err
	}
	// A gathering store fails at its Flush, not here; the flow logs that. Until the mark
	// is written, the claim (ours, within its lease) keeps other workers from sending.
	m.Store.Put(ctx, key, sentMark, keep)
	return true, nil
}

// claim claims the right to send a finding's email: a conditional write that one worker
// wins; a claim left by a worker that died unsent is taken over after emailLease.
func (m *Mailer) claim(ctx context.Context, key string, periodStart, keep time.Time) (bool, error) {
	mine, _ := json.Marshal(emailClaim{By: m.nonce(), At: m.now().Unix()})
	won, err := m.Store.Claim(ctx, key, mine, periodStart, keep)
	if err != nil || won {
		return won, err
	}
	cur, ok, err := m.Store.Get(ctx, key, periodStart)
	if err != nil || !ok {
		return false, err
	}
	var c emailClaim
	switch {
	case json.Unmarshal(cur, &c) != nil || c.Sent:
		return false, nil
	case c.By == m.nonce():
		return true, nil // our own claim, whose answer was lost
	case m.now().Sub(time.Unix(c.At, 0)) < emailLease:
		return false, nil // another worker is sending it
	}
	return m.Store.Swap(ctx, key, cur, mine, keep)
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
