package detect

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	gojson "github.com/goccy/go-json"

	"github.com/outsider-sec/outsider/pkg/store"
)

// TestVersionsLater: every version of a finding written is dated after the one it
// replaced, whatever the calls' order: Security Hub ignores an import whose UpdatedAt is
// not later than its copy's.
func TestVersionsLater(t *testing.T) {
	d := newDetector(t, store.NewMemory(), nil)
	run(t, d, history(21, evFn, evRole)...)
	s := roleSession(evRole, evFn, evKey)
	first, _ := findingOf(flushed(t, d, rec(day(20, 3600), s, "ListBuckets", cgIP, "python-requests")), TitleInside)
	if !first.Revised.Equal(first.LastSeen) {
		t.Errorf("a new finding is dated %s, want its last call's time %s", first.Revised, first.LastSeen)
	}
	// A late call, before the last one: the finding changes, its last call does not.
	lateCall := rec(day(20, 1800), s, "GetCallerIdentity", cgIP, "python-requests")
	late, _ := findingOf(flushed(t, d, lateCall), TitleInside)
	if late.Count != 2 || !late.LastSeen.Equal(first.LastSeen) || !late.Revised.After(first.Revised) {
		t.Errorf("after a late call: count %d, last call %s, dated %s; want 2, %s, after %s", late.Count, late.LastSeen, late.Revised, first.LastSeen, first.Revised)
	}
	// Its redelivery changes nothing: handed on again, the same version.
	again := flushed(t, d, lateCall)
	if f, _ := findingOf(again, TitleInside); len(again) != 1 || !again[0].Again || f.Count != 2 || !f.Revised.Equal(late.Revised) {
		t.Errorf("a redelivery handed on %+v, want the same version again", again)
	}
	next, _ := findingOf(flushed(t, d, rec(day(20, 7200), s, "ListBuckets", cgIP, "python-requests")), TitleInside)
	if !next.Revised.Equal(next.LastSeen) {
		t.Errorf("a later call dates the version %s, want its time %s", next.Revised, next.LastSeen)
	}
}

// TestVersionsOfAnOlderRelease: a finding stored before versions were dated was imported
// with its last call's time; its next version is dated after that.
func TestVersionsOfAnOlderRelease(t *testing.T) {
	st := store.NewMemory()
	d := newDetector(t, st, nil)
	run(t, d, history(21, evFn, evRole)...)
	s := roleSession(evRole, evFn, evKey)
	first, _ := findingOf(flushed(t, d, rec(day(20, 3600), s, "ListBuckets", cgIP, "python-requests")), TitleInside)
	ctx := context.Background()
	key := findingStoreKey(findingKey(first), first.PeriodStart)
	b, _, _ := st.Get(ctx, key, time.Time{})
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil || m["revised"] == nil {
		t.Fatalf("stored finding %s: %v", b, err)
	}
	delete(m, "revised")
	old, _ := json.Marshal(m)
	if err := st.Put(ctx, key, old, time.Time{}); err != nil {
		t.Fatal(err)
	}
	d = newDetector(t, st, nil) // a new container: the finding is read from the store
	late, _ := findingOf(flushed(t, d, rec(day(20, 1800), s, "GetCallerIdentity", cgIP, "python-requests")), TitleInside)
	if late.Count != 2 || !late.Revised.After(first.LastSeen) {
		t.Errorf("after a late call: count %d, dated %s; want 2, after %s", late.Count, late.Revised, first.LastSeen)
	}
}

// TestTwoWorkersOneFinding: two workers over one store decide calls of one finding at
// once. The first to write a counted call hands it on as new, the other as an update of
// a later version; a worker that only listed a presigned use in the opener's claim (no
// call counted yet) hands nothing on.
func TestTwoWorkersOneFinding(t *testing.T) {
	st := store.NewMemory()
	run(t, newDetector(t, st, nil), history(21, evFn, evRole)...)
	s := roleSession(evRole, evFn, evKey)
	ctx := context.Background()

	t.Run("a presigned use in the opener's claim", func(t *testing.T) {
		a, b := newDetector(t, st, nil), newDetector(t, st, nil)
		if _, err := a.Process(ctx, rec(day(20, 3600), s, "ListBuckets", cgIP, "python-requests")); err != nil {
			t.Fatal(err)
		}
		get := rec(day(20, 3000), s, "GetObject", "1.128.9.9", "Mozilla/5.0")
		get.Presigned = true
		if ch := flushed(t, b, get); len(ch) != 0 {
			t.Errorf("the worker that listed a presigned use in a claim handed on %+v, want nothing", ch)
		}
		ch := flushed(t, a)
		f, ok := findingOf(ch, TitleInside)
		if !ok || !ch[0].New || f.Count != 1 || f.Presigned != 1 {
			t.Errorf("the opener handed on %+v; want it new, one call, one presigned use", ch)
		}
	})

	t.Run("both count a call", func(t *testing.T) {
		a, b := newDetector(t, st, nil), newDetector(t, st, nil)
		// Another period: the week after.
		if _, err := a.Process(ctx, rec(day(27, 3600), s, "ListBuckets", cgIP, "python-requests")); err != nil {
			t.Fatal(err)
		}
		chB := flushed(t, b, rec(day(27, 3700), s, "ListObjects", cgIP, "python-requests"))
		chA := flushed(t, a)
		fb, _ := findingOf(chB, TitleInside)
		fa, _ := findingOf(chA, TitleInside)
		if len(chB) != 1 || !chB[0].New || fb.Count != 1 {
			t.Errorf("the first to write handed on %+v, want it new with one call", chB)
		}
		if len(chA) != 1 || chA[0].New || fa.Count != 2 || !fa.Revised.After(fb.Revised) {
			t.Errorf("the opener, second to write, handed on %+v; want an update, two calls, dated after %s", chA, fb.Revised)
		}
		cur, found, err := b.Stored(ctx, fb)
		if err != nil || !found || cur.Count != 2 || !cur.Revised.Equal(fa.Revised) {
			t.Errorf("stored: %+v %v %v, want the opener's version", cur, found, err)
		}
	})
}

// TestPutJSONStoresMarshal: putJSON encodes into a buffer it reuses; what it stores is
// json.Marshal's bytes, write after write (escapes, times, nested values, the buffer's
// earlier contents never showing through).
func TestPutJSONStoresMarshal(t *testing.T) {
	st := store.NewMemory()
	d := newDetector(t, st, nil)
	at := time.Date(2026, 3, 1, 0, 0, 9, 123, time.UTC)
	values := []any{
		issued{Lambda: true, Role: "fn-role", Account: "400000182629", Region: "us-east-1", At: at, Expires: at.Add(time.Hour)},
		issued{By: "arn:aws:iam::1:user/<b>&'\"\u2028", Role: "r", At: at, Function: &FunctionRef{Account: "1", Name: "f"}},
		fnRole{Role: "x", At: at},
		[]fnRole{{Role: "a", At: at}, {Role: "b", At: at.Add(time.Minute)}},
		"short",
	}
	for i, v := range values {
		key := fmt.Sprintf("test#%d", i)
		if err := d.putJSON(context.Background(), key, v, time.Time{}); err != nil {
			t.Fatal(err)
		}
		want, err := gojson.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		got, ok, err := st.Get(context.Background(), key, at)
		if err != nil || !ok || string(got) != string(want) {
			t.Errorf("%T stored %q, %v, %v; json.Marshal gives %q", v, got, ok, err, want)
		}
	}
}
