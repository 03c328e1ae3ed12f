package store

import (
	"bytes"
	"testing"
	"time"

	"github.com/outsider-sec/outsider/internal/gen"
	"github.com/outsider-sec/outsider/internal/storetest"
	"github.com/outsider-sec/outsider/pkg/cloudtrail"
	"github.com/outsider-sec/outsider/pkg/detect"
	"github.com/outsider-sec/outsider/pkg/flow"
	"github.com/outsider-sec/outsider/pkg/ipranges"
)

// BenchmarkEndToEnd: parse, decide and keep state with bbolt, per generated record (the
// light mix of internal/gen: mostly AWS-internal traffic, functions inside AWS, people
// from outside).
func BenchmarkEndToEnd(b *testing.B) {
	var buf bytes.Buffer
	if _, err := gen.Write(gen.Default(200_000), &buf); err != nil {
		b.Fatal(err)
	}
	endToEnd(b, bytes.Split(bytes.TrimSpace(buf.Bytes()), []byte("\n")))
}

// BenchmarkEndToEndDense: the same on the dense mix (accounts whose trails are mostly
// Lambda: its AssumeRoles and the functions' own calls, each a key to remember), 100
// accounts at the density of bench.sh's 400.
//
//	go test -run '^$' -bench EndToEndDense -benchtime 100000x ./pkg/store
func BenchmarkEndToEndDense(b *testing.B) {
	cfg := gen.Dense(100_000)
	cfg.Accounts, cfg.Hubs = 100, 2
	var lines [][]byte
	if _, err := gen.WriteDense(cfg, func(_ string, line []byte) error {
		lines = append(lines, bytes.TrimSpace(bytes.Clone(line)))
		return nil
	}); err != nil {
		b.Fatal(err)
	}
	endToEnd(b, lines)
}

// endToEnd runs lines through the replay's flow (batches of 1,000 records, the state
// written every 64,000 records, what expired a day behind forgotten by the store and the
// detector) and reports records/s;
// allocs/op is allocations per record.
func endToEnd(b *testing.B, lines [][]byte) {
	st, err := OpenBolt(b.TempDir(), true)
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	d, err := detect.New(detect.Default(), st, ipranges.Embedded(), nil)
	if err != nil {
		b.Fatal(err)
	}
	d.SetForget(30*time.Minute + 25*time.Hour) // as the replay's (its default reorder window)
	size := 0
	for _, l := range lines {
		size += len(l)
	}
	b.SetBytes(int64(size / len(lines)))
	b.ReportAllocs()
	f := &flow.Flow{Detector: d, Store: st, Sink: &storetest.Collect{}, EveryRecords: 64000}
	in := &flow.Input{ID: "bench"}
	i := 0
	for b.Loop() {
		cloudtrail.ParseValue(lines[i%len(lines)], func(r *cloudtrail.Record) {
			in.Records = append(in.Records, r)
		}, func(err error) { b.Fatal(err) })
		i++
		if len(in.Records) == 1000 {
			st.Forget(in.Records[0].Time.Add(-30*time.Minute - 24*time.Hour))
			if f.Run(ctx, []*flow.Input{in}); in.Err != nil {
				b.Fatal(in.Err)
			}
			in.Records = in.Records[:0]
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "records/s")
}
