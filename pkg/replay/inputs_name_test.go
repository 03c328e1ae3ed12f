package replay

import (
	"math/rand/v2"
	"regexp"
	"testing"
)

// TestLogFileTime holds the hand-written matcher of CloudTrail's file names to the pattern
// it replaces, on real-shaped names and tens of thousands of mutations of them.
func TestLogFileTime(t *testing.T) {
	re := regexp.MustCompile(`^\d{12}_CloudTrail_[a-z0-9-]+_(\d{8}T\d{4}Z)_[A-Za-z0-9]+\.json(\.gz)?$`)
	names := []string{
		"123456789012_CloudTrail_us-east-1_20260301T0005Z_AbCd1234.json.gz",
		"123456789012_CloudTrail_eu-west-3_20260301T2355Z_x.json",
		"123456789012_CloudTrail-Digest_us-east-1_20260301T0005Z.json.gz",
		"", "a", ".json", ".json.gz", "123456789012_CloudTrail_", "_CloudTrail_us-east-1_20260301T0005Z_a.json",
	}
	const alphabet = "0123456789_-.TZazAZjsongzCloudTrail\x00é"
	rng := rand.New(rand.NewPCG(3, 4))
	for range 60000 {
		n := []byte(names[rng.IntN(3)])
		for range 1 + rng.IntN(3) {
			i := rng.IntN(len(n) + 1)
			switch rng.IntN(3) {
			case 0:
				if i < len(n) {
					n = append(n[:i], n[i+1:]...)
				}
			case 1:
				n = append(n[:i], append([]byte{alphabet[rng.IntN(len(alphabet))]}, n[i:]...)...)
			default:
				if i < len(n) {
					n[i] = alphabet[rng.IntN(len(alphabet))]
				}
			}
		}
		names = append(names, string(n))
	}
	matched := 0
	for _, n := range names {
		want, wantOK := "", false
		if m := re.FindStringSubmatch(n); m != nil {
			want, wantOK = m[1], true
			matched++
		}
		if got, ok := logFileTime(n); got != want || ok != wantOK {
			t.Fatalf("%q: (%q, %v), the pattern says (%q, %v)", n, got, ok, want, wantOK)
		}
	}
	if matched < 1000 {
		t.Fatalf("only %d names matched: the mutations are too rough to test much", matched)
	}
}
