package replay

import (
	"bytes"
	"encoding/json"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/securityhub/types"

	"github.com/outsider-sec/outsider/pkg/asff"
)

// TestPrintedFindingsPassASFF: every finding the replay prints, on the demo (with the ASN
// database, all five titles) and on generated thefts (with a member account and the cross-
// region title), passes Security Hub's rules as asff.Check states them.
func TestPrintedFindingsPassASFF(t *testing.T) {
	gen := writeLines(t, history(t, 7, 6000, 40, time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)))
	for name, args := range map[string][]string{
		"demo":      {"--asn-db", "testdata/GeoLite2-ASN-Test.mmdb", "--activation", "0d", "../../events"},
		"generated": {"--cross-region", "--security-account", "111122223333", gen},
	} {
		t.Run(name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			if code := Main(append([]string{"--fresh", "--state", t.TempDir(), "--format", "json", "--progress", "0"}, args...), nil, &stdout, &stderr); code != ExitOK {
				t.Fatalf("exit %d: %s", code, stderr.String())
			}
			n := 0
			for _, line := range bytes.Split(bytes.TrimSpace(stdout.Bytes()), []byte("\n")) {
				var f types.AwsSecurityFinding
				if err := json.Unmarshal(line, &f); err != nil {
					t.Fatalf("not a finding: %v: %s", err, line)
				}
				if err := asff.Check(f); err != nil {
					t.Errorf("%s: %v", *f.Id, err)
				}
				n++
			}
			if n < 5 {
				t.Errorf("%d findings printed: the check says little", n)
			}
		})
	}
}
