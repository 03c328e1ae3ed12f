package pipeline_test

import (
	"bytes"
	"testing"
	"time"

	"github.com/outsider-sec/outsider/internal/gen"
)

// BenchmarkLambdaDense measures the Lambda's side on the dense mix (hundreds of accounts of
// busy functions, ~15% of calls from outside): the real handler over DynamoDB, Security
// Hub and SNS in the local server, each DynamoDB request delayed as DynamoDB answers (a few
// milliseconds), in 500-record invocations as the stack's event source mapping gives them.
// It reports DynamoDB write and read units per record, requests per record, and the time of
// an invocation: the inputs of the README's cost table.
//
//	go test -run '^$' -bench LambdaDense -benchtime 1x ./pkg/pipeline
func BenchmarkLambdaDense(b *testing.B) {
	cfg := gen.Dense(12000)
	// 12 accounts of the same density as the dense mix's 400 (1,000 records an account
	// over 47 days): what one container sees of each account is what matters.
	cfg.Accounts, cfg.Hubs = 12, 2
	var lines [][]byte
	if _, err := gen.WriteDense(cfg, func(_ string, line []byte) error {
		env, err := gen.Envelope(bytes.TrimSpace(line))
		lines = append(lines, env)
		return err
	}); err != nil {
		b.Fatal(err)
	}
	for range b.N {
		e := setup(b)
		e.faults.Latency = map[string]time.Duration{"dynamodb": 4 * time.Millisecond}
		h, st := e.handler(b, nil)
		bs := batches(lines, 500)
		start := time.Now()
		failed := deliver(b, h, bs)
		el := time.Since(start)
		n := float64(len(lines))
		b.ReportMetric(float64(st.Written)/n, "WU/record")
		b.ReportMetric(float64(st.Read)/n, "RU/record")
		b.ReportMetric(float64(st.Calls)/n, "requests/record")
		b.ReportMetric(float64(el.Milliseconds())/float64(len(bs)), "ms/invocation")
		b.ReportMetric(float64(failed), "failed-deliveries")
	}
}
