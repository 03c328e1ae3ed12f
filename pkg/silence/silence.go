// Package silence keeps when each account's records last reached the detector, and names
// the accounts that went quiet (DESIGN §8: nobody goes quiet unseen). The stack's alarms
// cover the accounts it is told about; this covers every account the detector ever heard
// from, learned from its own records, without a deployment per new account.
//
// The register is one item of the detector's table: account -> the wall time (Unix
// seconds) its records last arrived. Each container writes an account at most every few
// minutes; the refresher reads it hourly and reports the silent ones as a metric the
// stack alarms on.
package silence

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"time"

	"github.com/outsider-sec/outsider/pkg/awsid"
	"github.com/outsider-sec/outsider/pkg/detect"
)

// Key is the register's item in the detector's table.
const Key = "heard#"

const (
	// forget drops an account silent this long: closed, or moved out of the organisation.
	// It was reported every hour for a month before.
	forget = 30 * 24 * time.Hour
	// maxAccounts bounds the register (about 30 bytes an account, far below DynamoDB's
	// 400 KB item); past it the accounts silent the longest are dropped.
	maxAccounts = 10_000
	attempts    = 8
)

// Register records arrivals. It is not safe for concurrent use: one per container.
type Register struct {
	Store detect.Store
	// Every is how often this container writes an account's arrival (default 10 min): a
	// silence is hours, so minutes of error cost nothing and save a write per batch.
	Every time.Duration

	written map[string]time.Time
}

// Heard records that records of accounts arrived at now. Only accounts this container has
// not written within Every are written; an error leaves them to the next call.
func (r *Register) Heard(ctx context.Context, accounts []string, now time.Time) error {
	every := r.Every
	if every <= 0 {
		every = 10 * time.Minute
	}
	if r.written == nil {
		r.written = map[string]time.Time{}
	}
	var due []string
	for _, a := range accounts {
		if w, ok := r.written[a]; (!ok || now.Sub(w) >= every) && awsid.IsAccountID(a) {
			due = append(due, a)
		}
	}
	if len(due) == 0 {
		return nil
	}
	for range attempts {
		old, m, err := read(ctx, r.Store)
		if err != nil {
			return err
		}
		for _, a := range due {
			m[a] = max(m[a], now.Unix())
		}
		prune(m, now)
		b, _ := json.Marshal(m)
		ok, err := r.Store.Swap(ctx, Key, old, b, time.Time{})
		if err != nil {
			return fmt.Errorf("silence: write the register: %w", err)
		}
		if ok {
			for _, a := range due {
				r.written[a] = now
			}
			return nil
		}
	}
	return fmt.Errorf("silence: the register changed under %d writes in a row", attempts)
}

// prune drops the accounts silent past forget, and the longest silent past maxAccounts.
func prune(m map[string]int64, now time.Time) {
	for a, t := range m {
		if now.Sub(time.Unix(t, 0)) > forget {
			delete(m, a)
		}
	}
	if len(m) <= maxAccounts {
		return
	}
	byAge := slices.SortedFunc(maps.Keys(m), func(a, b string) int { return cmp.Compare(m[a], m[b]) })
	for _, a := range byAge[:len(m)-maxAccounts] {
		delete(m, a)
	}
}

func read(ctx context.Context, s detect.Store) ([]byte, map[string]int64, error) {
	b, ok, err := s.Get(ctx, Key, time.Time{})
	if err != nil {
		return nil, nil, fmt.Errorf("silence: read the register: %w", err)
	}
	m := map[string]int64{}
	if !ok {
		return nil, m, nil
	}
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, nil, fmt.Errorf("silence: the register holds a bad value: %w", err)
	}
	return b, m, nil
}

// Quiet is an account whose records stopped arriving.
type Quiet struct {
	Account string
	Last    time.Time // when its records last arrived
}

// Check returns the accounts of the register whose records last arrived more than
// silence before now, by account.
func Check(ctx context.Context, s detect.Store, now time.Time, silence time.Duration) ([]Quiet, error) {
	_, m, err := read(ctx, s)
	if err != nil {
		return nil, err
	}
	var out []Quiet
	for _, a := range slices.Sorted(maps.Keys(m)) {
		if last := time.Unix(m[a], 0).UTC(); now.Sub(last) > silence {
			out = append(out, Quiet{a, last})
		}
	}
	return out, nil
}

// Job is the refresher's hourly look at the register: the SilentAccounts metric (every
// hour, 0 too, so that the stack's alarm has data) and a warning naming each account.
type Job struct {
	Store   detect.Store
	Silence time.Duration
	Metric  func(name string, v int, at time.Time) // the refresher's metrics (refresh.WriteMetric)
	Now     func() time.Time
}

// Run implements the refresher's Job.
func (j Job) Run(ctx context.Context, log *slog.Logger) error {
	now := time.Now()
	if j.Now != nil {
		now = j.Now()
	}
	quiet, err := Check(ctx, j.Store, now, j.Silence)
	if err != nil {
		return err
	}
	for _, q := range quiet {
		log.WarnContext(ctx, "no CloudTrail record from this account: its forwarding rule or trail may be off",
			"account", q.Account, "lastArrived", q.Last.Format(time.RFC3339), "silentHours", int(now.Sub(q.Last).Hours()))
	}
	if j.Metric != nil {
		j.Metric("SilentAccounts", len(quiet), now)
	}
	return nil
}
