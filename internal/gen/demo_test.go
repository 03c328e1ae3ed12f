package gen

import (
	"bytes"
	"flag"
	"os"
	"testing"
)

var update = flag.Bool("update", false, "rewrite events/demo")

const demoPath = "../../events/demo/history.ndjson"

// TestDemoIsCurrent: the committed demo history is what Demo writes.
func TestDemoIsCurrent(t *testing.T) {
	var buf bytes.Buffer
	if err := Demo(&buf); err != nil {
		t.Fatal(err)
	}
	if *update {
		os.MkdirAll("../../events/demo", 0o755)
		if err := os.WriteFile(demoPath, buf.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	got, err := os.ReadFile(demoPath)
	if err != nil {
		t.Fatalf("%v (go test ./internal/gen -update writes it)", err)
	}
	if !bytes.Equal(got, buf.Bytes()) {
		t.Error("events/demo/history.ndjson is not what Demo writes: go test ./internal/gen -update")
	}
}
