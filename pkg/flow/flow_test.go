package flow_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/outsider-sec/outsider/pkg/cloudtrail"
	"github.com/outsider-sec/outsider/pkg/detect"
	"github.com/outsider-sec/outsider/pkg/flow"
	"github.com/outsider-sec/outsider/pkg/ipranges"
	"github.com/outsider-sec/outsider/pkg/store"
)

var ctx = context.Background()

// demo reads the demo history, a record an input, as SQS would deliver it.
func demo(t *testing.T) []*flow.Input {
	t.Helper()
	b, err := os.ReadFile("../../events/demo/history.ndjson")
	if err != nil {
		t.Fatal(err)
	}
	var ins []*flow.Input
	for _, line := range bytes.Split(bytes.TrimSpace(b), []byte("\n")) {
		in := &flow.Input{}
		cloudtrail.ParseValue(line, func(r *cloudtrail.Record) {
			in.ID = r.EventID
			in.Records = append(in.Records, r)
		}, func(err error) { t.Fatal(err) })
		ins = append(ins, in)
	}
	return ins
}

// refusing is a sink that refuses the findings it is told to, and keeps the others.
type refusing struct {
	refuse func(detect.Finding) bool
	kept   map[string]detect.Finding
}

func (s *refusing) Publish(_ context.Context, changes []detect.Change) (flow.Published, error) {
	pub := flow.Published{Failed: map[string]error{}}
	for _, c := range changes {
		if s.refuse(c.Finding) {
			pub.Failed[c.Finding.ID] = errors.New("refused")
			continue
		}
		s.kept[c.Finding.ID] = c.Finding
	}
	return pub, nil
}

func newFlow(t *testing.T, st detect.Store, sink flow.Sink) *flow.Flow {
	t.Helper()
	d, err := detect.New(detect.Default(), st, ipranges.Embedded(), nil)
	if err != nil {
		t.Fatal(err)
	}
	return &flow.Flow{Detector: d, Store: st, Sink: sink}
}

// TestRefusedFindingRetriesItsInputs: a finding the sink refuses fails exactly the inputs
// counted in it; delivered again (to a fresh worker over the same store), they reach the
// sink, and in the end it holds what a run without refusals gives.
func TestRefusedFindingRetriesItsInputs(t *testing.T) {
	want := &refusing{refuse: func(detect.Finding) bool { return false }, kept: map[string]detect.Finding{}}
	clean := newFlow(t, store.NewMemory(), want)
	for _, batch := range slices.Collect(slices.Chunk(demo(t), 10)) {
		if sum := clean.Run(ctx, batch); sum.Failed != 0 {
			t.Fatalf("clean run: %d failed", sum.Failed)
		}
	}
	if len(want.kept) != 4 {
		t.Fatalf("clean run: %d findings, want the demo's 4", len(want.kept))
	}

	st := store.NewMemory()
	refuseOnce := map[string]bool{}
	sink := &refusing{kept: map[string]detect.Finding{}, refuse: func(f detect.Finding) bool {
		if f.Title != detect.TitleCLI || refuseOnce[f.ID] {
			return false
		}
		refuseOnce[f.ID] = true
		return true
	}}
	var retry []*flow.Input
	for _, batch := range slices.Collect(slices.Chunk(demo(t), 10)) {
		newFlow(t, st, sink).Run(ctx, batch)
		for _, in := range batch {
			if in.Err != nil {
				retry = append(retry, in)
			}
		}
	}
	if len(retry) == 0 {
		t.Fatal("no input failed: the refusal did not reach the inputs")
	}
	for _, in := range retry {
		for _, r := range in.Records {
			if r.Addr.IsPrivate() || r.Addr.IsLoopback() {
				t.Errorf("input %s failed but cannot count in a finding from outside", in.ID)
			}
		}
	}
	if sum := newFlow(t, st, sink).Run(ctx, retry); sum.Failed != 0 {
		t.Fatalf("redelivery: %d failed", sum.Failed)
	}
	for id, f := range want.kept {
		got, ok := sink.kept[id]
		if !ok || got.Count != f.Count || !got.LastSeen.Equal(f.LastSeen) {
			t.Errorf("%s: after the redelivery %+v, want count %d last seen %s", id, got, f.Count, f.LastSeen)
		}
	}
}

// failingStore fails every write after a point.
type failingStore struct {
	*store.Memory
	fail bool
}

func (s *failingStore) Flush(context.Context) error {
	if s.fail {
		return errors.New("injected")
	}
	return nil
}

// TestStoreFailureFailsTheBatch: when the state cannot be written, every input of the
// batch is delivered again, and nothing reaches the sink.
func TestStoreFailureFailsTheBatch(t *testing.T) {
	st := &failingStore{Memory: store.NewMemory(), fail: true}
	sink := &refusing{refuse: func(detect.Finding) bool { return false }, kept: map[string]detect.Finding{}}
	ins := demo(t)
	sum := newFlow(t, st, sink).Run(ctx, ins)
	if sum.Failed != len(ins) || len(sink.kept) != 0 {
		t.Errorf("%d of %d inputs failed, %d findings handed on; want all failed, none handed on", sum.Failed, len(ins), len(sink.kept))
	}
}

// TestDeadlineDefers: with the deadline inside the margin, no record is decided and every
// input is deferred.
func TestDeadlineDefers(t *testing.T) {
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	f := newFlow(t, store.NewMemory(), &refusing{refuse: func(detect.Finding) bool { return false }, kept: map[string]detect.Finding{}})
	f.Margin = time.Minute
	ins := demo(t)
	sum := f.Run(ctx, ins)
	if sum.Deferred != sum.Records || sum.Failed != len(ins) || !errors.Is(ins[0].Err, flow.ErrDeadline) {
		t.Errorf("deferred %d of %d records, %d inputs failed (%v)", sum.Deferred, sum.Records, sum.Failed, ins[0].Err)
	}
}

// TestSameSecondTeachesFirst: within one second, what teaches is applied before what is
// decided, whatever the order of the batch. The billing-export theft's calls are moved to
// the very second of its key's first use inside AWS, and listed before it: the key is
// still seen inside when they are decided (title 4, not the plain title 5).
func TestSameSecondTeachesFirst(t *testing.T) {
	var recs []*cloudtrail.Record
	for _, in := range demo(t) {
		recs = append(recs, in.Records...)
	}
	var thefts []*cloudtrail.Record
	for _, r := range recs {
		if r.SourceIP == "36.192.7.9" {
			thefts = append(thefts, r)
		}
	}
	if len(thefts) == 0 {
		t.Fatal("no billing-export theft in the demo")
	}
	i := slices.IndexFunc(recs, func(r *cloudtrail.Record) bool {
		return r.Identity.AccessKeyID == thefts[0].Identity.AccessKeyID && r.SourceIP != "36.192.7.9" && r.Addr.IsValid()
	})
	if i < 0 {
		t.Fatal("the key is never used inside")
	}
	inside := recs[i]
	var batch []*cloudtrail.Record
	for _, r := range recs {
		switch {
		case r == inside:
			for _, th := range thefts {
				th.Time = inside.Time
				batch = append(batch, th)
			}
			batch = append(batch, r)
		case r.Identity.AccessKeyID == inside.Identity.AccessKeyID && r.SourceIP == "AWS Internal":
			// AWS acting with the key: no sighting inside, left out so that the moved
			// second alone decides.
		case r.SourceIP != "36.192.7.9":
			batch = append(batch, r)
		}
	}
	sink := &refusing{refuse: func(detect.Finding) bool { return false }, kept: map[string]detect.Finding{}}
	fl := newFlow(t, store.NewMemory(), sink)
	fl.Finish(context.Background(), []*flow.Input{{ID: "all", Records: batch}})
	var titles []detect.Title
	for _, f := range sink.kept {
		if f.Function == "billing-export" {
			titles = append(titles, f.Title)
		}
	}
	if !slices.Equal(titles, []detect.Title{detect.TitleInside}) {
		t.Errorf("billing-export's findings %q, want one %q", titles, detect.TitleInside)
	}
}

// TestEmailMinSeverity: a finding below the minimum severity is not emailed (nor claimed:
// lowering the setting later emails it); one at or above is, once.
func TestEmailMinSeverity(t *testing.T) {
	ctx := context.Background()
	st := store.NewMemory()
	var sent []string
	m := &flow.Mailer{Store: st, MinSeverity: "LOW", Send: func(_ context.Context, f detect.Finding) error {
		sent = append(sent, f.ID)
		return nil
	}}
	info := detect.Finding{ID: "info", Severity: "INFORMATIONAL", PeriodStart: time.Unix(1_760_000_000, 0)}
	high := detect.Finding{ID: "high", Severity: "HIGH", PeriodStart: time.Unix(1_760_000_000, 0)}
	for _, f := range []detect.Finding{info, high, info, high} {
		if _, err := m.Mail(ctx, f); err != nil {
			t.Fatal(err)
		}
	}
	if len(sent) != 1 || sent[0] != "high" {
		t.Errorf("sent %v, want [high]", sent)
	}
	m.MinSeverity = ""
	if ok, err := m.Mail(ctx, info); !ok || err != nil {
		t.Errorf("with no minimum, the informational finding was not emailed: %v %v", ok, err)
	}
}

// TestUpdateEmails: a finding emailed before is emailed again when it holds a key or a
// source address no email named, at most once an hour, saying only what is new; two
// workers seeing the same change send one update.
func TestUpdateEmails(t *testing.T) {
	ctx := context.Background()
	st := store.NewMemory()
	wall := time.Date(2026, 12, 6, 10, 0, 0, 0, time.UTC)
	type sent struct {
		id        string
		keys, ips string
		update    bool
	}
	var out []sent
	newMailer := func() *flow.Mailer {
		return &flow.Mailer{Store: st, Now: func() time.Time { return wall },
			Send: func(_ context.Context, f detect.Finding) error {
				out = append(out, sent{id: f.ID})
				return nil
			},
			SendUpdate: func(_ context.Context, f detect.Finding, keys, ips []string) error {
				out = append(out, sent{f.ID, strings.Join(keys, ","), strings.Join(ips, ","), true})
				return nil
			}}
	}
	a, b := newMailer(), newMailer()
	f := detect.Finding{ID: "f", Severity: "HIGH", PeriodStart: time.Unix(1_760_000_000, 0), AccessKeys: []string{"K1"}, Sources: []detect.Source{{IP: "1.1.1.1"}}}
	step := func(m *flow.Mailer, after time.Duration, keys []string, ips ...string) {
		t.Helper()
		wall = wall.Add(after)
		f.AccessKeys = keys
		f.Sources = nil
		for _, ip := range ips {
			f.Sources = append(f.Sources, detect.Source{IP: ip})
		}
		if _, err := m.Mail(ctx, f); err != nil {
			t.Fatal(err)
		}
	}
	step(a, 0, []string{"K1"}, "1.1.1.1")                            // the first email
	step(b, time.Minute, []string{"K1"}, "1.1.1.1")                  // nothing new
	step(a, 10*time.Minute, []string{"K1", "K2"}, "1.1.1.1")         // new key, within the hour: waits
	step(b, 51*time.Minute, []string{"K1", "K2"}, "1.1.1.1")         // the hour passed: K2
	step(a, time.Minute, []string{"K1", "K2"}, "1.1.1.1")            // said already
	step(a, 2*time.Hour, []string{"K1", "K2"}, "1.1.1.1", "2.2.2.2") // a new address
	step(b, 0, []string{"K1", "K2"}, "1.1.1.1", "2.2.2.2")           // the other worker: said already
	want := []sent{{id: "f"}, {"f", "K2", "", true}, {"f", "", "2.2.2.2", true}}
	if diff := cmp.Diff(want, out, cmp.AllowUnexported(sent{})); diff != "" {
		t.Errorf("emails (-want +got):\n%s", diff)
	}

	// A mark written before update emails existed: what the finding holds counts as said.
	g := detect.Finding{ID: "g", Severity: "HIGH", PeriodStart: f.PeriodStart, AccessKeys: []string{"K9"}}
	if err := st.Put(ctx, "notify#g", []byte(`{"sent":true}`), time.Time{}); err != nil {
		t.Fatal(err)
	}
	out = nil
	wall = wall.Add(3 * time.Hour)
	if _, err := a.Mail(ctx, g); err != nil {
		t.Fatal(err)
	}
	if len(out) != 0 {
		t.Errorf("an old mark sent %v", out)
	}
}
