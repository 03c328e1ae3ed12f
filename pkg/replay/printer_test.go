package replay

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/outsider-sec/outsider/pkg/detect"
)

// TestPrinterKeepsTheLatest: when two shards wrote one finding, the one that wrote first
// may publish last; its line, with fewer calls, is not printed after the other's.
func TestPrinterKeepsTheLatest(t *testing.T) {
	var out bytes.Buffer
	p := newPrinter(Options{Format: "text"}, &out, nil)
	f := detect.Finding{ID: "outsider/123456789012/function/eu-west-1:orders/cli/20260518T000000Z", Account: "123456789012",
		Region: "eu-west-1", Title: detect.TitleCLI, Subject: "orders", LastSeen: time.Date(2026, 5, 20, 0, 0, 0, 0, time.UTC)}
	for _, n := range []int{3, 7, 5, 7} {
		f.Count = n
		if _, err := p.Publish(context.Background(), []detect.Change{{Finding: f}}); err != nil {
			t.Fatal(err)
		}
	}
	p.close()
	var counts []string
	for _, l := range strings.Split(strings.TrimSpace(out.String()), "\n")[1:] {
		fields := strings.Fields(l)
		for _, w := range fields {
			if strings.HasSuffix(w, ":") {
				counts = append(counts, strings.TrimSuffix(w, ":"))
			}
		}
	}
	if got := strings.Join(counts, ","); got != "3,7,7" {
		t.Errorf("printed counts %s, want 3,7,7 (5 came after 7)", got)
	}
}
