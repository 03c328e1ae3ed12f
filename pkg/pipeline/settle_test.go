package pipeline_test

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"sync"
	"testing"

	"github.com/aws/aws-sdk-go-v2/service/securityhub/types"

	"github.com/outsider-sec/outsider/pkg/asff"
	"github.com/outsider-sec/outsider/pkg/detect"
	"github.com/outsider-sec/outsider/pkg/ipranges"
	"github.com/outsider-sec/outsider/pkg/pipeline"
	"github.com/outsider-sec/outsider/pkg/store"
)

// lastWins is a Security Hub where the last import of an Id wins, whatever its UpdatedAt
// (as moto's does; Security Hub itself keeps the later UpdatedAt).
type lastWins struct {
	mu       sync.Mutex
	findings map[string]types.AwsSecurityFinding
}

func (h *lastWins) Import(_ context.Context, fs []types.AwsSecurityFinding) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, f := range fs {
		h.findings[*f.Id] = f
	}
	return nil
}

// slowImport lands its imports in hub after running first, once, what another container
// does meanwhile.
type slowImport struct {
	hub       *lastWins
	meanwhile func()
}

func (s *slowImport) Import(ctx context.Context, fs []types.AwsSecurityFinding) error {
	if f := s.meanwhile; f != nil {
		s.meanwhile = nil
		f()
	}
	return s.hub.Import(ctx, fs)
}

// TestStaleImportSettles: container a writes a finding's first call; before its import
// lands, container b counts the theft's two other calls in it and imports its version.
// a's import of the older version lands last; a reads the finding back, sees b's later
// version and imports that. Security Hub ends with the table's version: three calls.
func TestStaleImportSettles(t *testing.T) {
	st := store.NewMemory()
	hub := &lastWins{findings: map[string]types.AwsSecurityFinding{}}
	container := func(im pipeline.Importer) *pipeline.Handler {
		det, err := detect.New(detect.Default(), st, ipranges.Embedded(), nil)
		if err != nil {
			t.Fatal(err)
		}
		return &pipeline.Handler{Detector: det, Store: st, Hub: im, Notify: noEmail{},
			Product: asff.Product{Partition: "aws", Region: "us-east-1", Account: "111122223333"}, Log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	}
	lines := demo(t)
	cut := 0
	for i, l := range lines {
		if bytes.Contains(l, []byte(`"time":"2026-05-20T14:00:00Z"`)) {
			cut = i
			break
		}
	}
	slow := &slowImport{hub: hub}
	a, b := container(slow), container(hub)
	deliver(t, a, batches(lines[:cut], 50))
	slow.meanwhile = func() { deliver(t, b, batches(lines[cut+1:cut+3], 3)) }
	deliver(t, a, batches(lines[cut:cut+1], 1))

	if len(hub.findings) != 1 {
		t.Fatalf("%d findings in Security Hub, want 1", len(hub.findings))
	}
	for _, f := range hub.findings {
		if got := f.ProductFields["outsider/Count"]; got != "3" {
			t.Errorf("Security Hub holds the finding with %s calls, want the table's 3 (updated %s)", got, *f.UpdatedAt)
		}
	}
}
