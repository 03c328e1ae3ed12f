package store

import (
	"bytes"
	"testing"

	"github.com/outsider-sec/outsider/internal/storetest"
	"github.com/outsider-sec/outsider/pkg/flow"

	"github.com/outsider-sec/outsider/internal/gen"
	"github.com/outsider-sec/outsider/pkg/cloudtrail"
	"github.com/outsider-sec/outsider/pkg/detect"
	"github.com/outsider-sec/outsider/pkg/ipranges"
)

// BenchmarkEndToEnd: parse, decide and keep state with bbolt, per generated record (the
// mix of internal/gen: mostly AWS-internal traffic, functions inside AWS, people from outside).
func BenchmarkEndToEnd(b *testing.B) {
	var buf bytes.Buffer
	if _, err := gen.Write(gen.Default(200_000), &buf); err != nil {
		b.Fatal(err)
	}
	lines := bytes.Split(bytes.TrimSpace(buf.Bytes()), []byte("\n"))
	st, err := OpenBolt(b.TempDir(), true)
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	d, err := detect.New(detect.Default(), st, ipranges.Embedded(), nil)
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(buf.Len() / len(lines)))
	b.ReportAllocs()
	// The replay's flow: batches of 1,000 records, facts written every 64 batches.
	f := &flow.Flow{Detector: d, Store: st, Sink: &storetest.Collect{}, Every: 64}
	in := &flow.Input{ID: "bench"}
	i := 0
	for b.Loop() {
		cloudtrail.ParseValue(lines[i%len(lines)], func(r *cloudtrail.Record) {
			in.Records = append(in.Records, r)
		}, func(err error) { b.Fatal(err) })
		i++
		if len(in.Records) == 1000 {
			if f.Run(ctx, []*flow.Input{in}); in.Err != nil {
				b.Fatal(in.Err)
			}
			in.Records = in.Records[:0]
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "records/s")
}
