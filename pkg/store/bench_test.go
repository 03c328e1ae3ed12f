package store

import (
	"bytes"
	"testing"

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
	i := 0
	for b.Loop() {
		cloudtrail.ParseValue(lines[i%len(lines)], func(r *cloudtrail.Record) {
			if err := d.Process(ctx, r); err != nil {
				b.Fatal(err)
			}
		}, func(err error) { b.Fatal(err) })
		i++
		if i%1000 == 0 {
			if _, err := d.Flush(ctx); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "records/s")
}
