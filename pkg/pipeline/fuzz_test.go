package pipeline_test

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/aws/aws-lambda-go/events"
)

// FuzzInvoke hands the handler whatever Lambda could: SQS batches of EventBridge events,
// single events, and anything else. It must never panic, and a payload it cannot read is
// an error or counted, never a crash. Seeded with the sample events, as SQS batches and
// alone, and the demo's.
//
//	go test ./pkg/pipeline -run '^$' -fuzz FuzzInvoke -fuzztime 10m
func FuzzInvoke(f *testing.F) {
	files, _ := filepath.Glob("../../events/*.json")
	for _, p := range files {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
		batch, _ := json.Marshal(events.SQSEvent{Records: []events.SQSMessage{{MessageId: "m1", Body: string(b), EventSource: "aws:sqs"}}})
		f.Add(batch)
	}
	demoFile, err := os.ReadFile("../../events/demo/history.ndjson")
	if err != nil {
		f.Fatal(err)
	}
	lines := bytes.Split(bytes.TrimSpace(demoFile), []byte("\n"))
	for i := 0; i+5 <= len(lines) && i < 100; i += 5 {
		var ev events.SQSEvent
		for j, l := range lines[i : i+5] {
			ev.Records = append(ev.Records, events.SQSMessage{MessageId: string(rune('a' + j)), Body: string(l), EventSource: "aws:sqs"})
		}
		b, _ := json.Marshal(ev)
		f.Add(b)
	}
	f.Add([]byte(`{"Records":[{"eventSource":"aws:sqs","body":"{\"source\":\"aws.sts\",\"detail-type\":\"AWS API Call via CloudTrail\",\"detail\":[1,2]}"}]}`))
	f.Add([]byte(`null`))
	h, _ := memoryHandler(f)
	f.Fuzz(func(t *testing.T, payload []byte) {
		h.Invoke(context.Background(), payload)
	})
}
