package silence

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/outsider-sec/outsider/pkg/refresh"
	"github.com/outsider-sec/outsider/pkg/store"
)

type counting struct {
	*store.Memory
	swaps int
}

func (c *counting) Swap(ctx context.Context, k string, old, v []byte, exp time.Time) (bool, error) {
	c.swaps++
	return c.Memory.Swap(ctx, k, old, v, exp)
}

func quiet(t *testing.T, s *counting, now time.Time) []string {
	t.Helper()
	q, err := Check(context.Background(), s, now, 6*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, a := range q {
		out = append(out, a.Account)
	}
	return out
}

func TestRegister(t *testing.T) {
	ctx := context.Background()
	s := &counting{Memory: store.NewMemory()}
	t0 := time.Date(2026, 12, 6, 0, 0, 0, 0, time.UTC)
	const a, b, c = "111111111111", "222222222222", "333333333333"
	r1, r2 := &Register{Store: s}, &Register{Store: s}

	// Two containers, each hearing from some accounts: both are kept.
	if err := r1.Heard(ctx, []string{a, b}, t0); err != nil {
		t.Fatal(err)
	}
	if err := r2.Heard(ctx, []string{c}, t0); err != nil {
		t.Fatal(err)
	}
	// A container writes an account at most every ten minutes; not an account id at all.
	before := s.swaps
	for i := range 50 {
		if err := r1.Heard(ctx, []string{a, b, "not-an-account", strings.Repeat("9", 5000)}, t0.Add(time.Duration(i)*10*time.Second)); err != nil {
			t.Fatal(err)
		}
	}
	if s.swaps != before {
		t.Errorf("%d writes for accounts written less than ten minutes ago", s.swaps-before)
	}
	if got := quiet(t, s, t0.Add(5*time.Hour)); got != nil {
		t.Errorf("silent after 5 hours: %v", got)
	}
	// b and c keep sending; a goes quiet.
	for h := 1; h <= 8; h++ {
		now := t0.Add(time.Duration(h) * time.Hour)
		if err := r1.Heard(ctx, []string{b}, now); err != nil {
			t.Fatal(err)
		}
		if err := r2.Heard(ctx, []string{c}, now); err != nil {
			t.Fatal(err)
		}
	}
	if got, want := quiet(t, s, t0.Add(8*time.Hour)), []string{a}; !cmp.Equal(got, want) {
		t.Errorf("silent after 8 hours: %v, want %v", got, want)
	}

	// The refresher's hourly job: a metric line and a warning naming the account.
	var metrics, logs bytes.Buffer
	j := Job{Store: s, Silence: 6 * time.Hour, Metric: func(name string, v int, at time.Time) { refresh.WriteMetric(&metrics, name, v, at) }, Now: func() time.Time { return t0.Add(8 * time.Hour) }}
	if err := j.Run(ctx, slog.New(slog.NewJSONHandler(&logs, nil))); err != nil {
		t.Fatal(err)
	}
	var m struct{ SilentAccounts int }
	if err := json.Unmarshal(metrics.Bytes(), &m); err != nil || m.SilentAccounts != 1 || !strings.Contains(metrics.String(), `"Namespace":"Outsider"`) {
		t.Errorf("metric line %q (%v)", metrics.String(), err)
	}
	if !strings.Contains(logs.String(), a) || strings.Contains(logs.String(), b) || !strings.Contains(logs.String(), `"silentHours":8`) {
		t.Errorf("log %q", logs.String())
	}

	// A month quiet: forgotten (an account closed or gone from the organisation).
	// At 30 days and 2 hours, a (quiet since 0 h) goes, b (quiet since 8 h) stays.
	later := t0.Add(30*24*time.Hour + 2*time.Hour)
	if err := r2.Heard(ctx, []string{c}, later); err != nil {
		t.Fatal(err)
	}
	if got, want := quiet(t, s, later), []string{b}; !cmp.Equal(got, want) {
		t.Errorf("after a month: %v, want %v", got, want)
	}
}

// The register stays far below DynamoDB's 400 KB item: past maxAccounts, the accounts
// silent the longest go.
func TestRegisterBounded(t *testing.T) {
	ctx := context.Background()
	s := &counting{Memory: store.NewMemory()}
	t0 := time.Date(2026, 12, 6, 0, 0, 0, 0, time.UTC)
	r := &Register{Store: s}
	var accounts []string
	for i := range maxAccounts + 500 {
		accounts = append(accounts, fmt.Sprintf("%012d", i))
	}
	// The first 500 heard an hour earlier than the rest.
	if err := r.Heard(ctx, accounts[:500], t0); err != nil {
		t.Fatal(err)
	}
	if err := r.Heard(ctx, accounts[500:], t0.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	b, _, _ := s.Get(ctx, Key, time.Time{})
	if len(b) > 300_000 {
		t.Errorf("register of %d bytes", len(b))
	}
	q, err := Check(ctx, s, t0.Add(30*time.Hour), 6*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if len(q) != maxAccounts || q[0].Account != accounts[500] {
		t.Errorf("%d accounts kept, the first %v; want %d from %s", len(q), q[0], maxAccounts, accounts[500])
	}
}
