package asff

import (
	"bytes"
	"math/rand/v2"
	"reflect"
	"testing"

	"github.com/aws/aws-sdk-go-v2/service/securityhub/types"

	"github.com/outsider-sec/outsider/pkg/detect"
)

// TestJSONMatchesReference: the walking renderer writes what rendering, decoding, pruning
// and rendering again writes, byte for byte, on findings whose every field is filled at
// random (nil or not, empty strings, odd characters, invalid UTF-8, numbers, nested
// lists and maps).
func TestJSONMatchesReference(t *testing.T) {
	for seed := range uint64(300) {
		rng := rand.New(rand.NewPCG(seed, 7))
		var f types.AwsSecurityFinding
		fill(rng, reflect.ValueOf(&f).Elem(), 0)
		got, err := JSON(f)
		if err != nil {
			t.Fatal(err)
		}
		want, err := jsonSlow(f)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			i := 0
			for i < min(len(got), len(want)) && got[i] == want[i] {
				i++
			}
			t.Fatalf("seed %d: differs at byte %d:\n got …%s\nwant …%s", seed, i, got[max(0, i-80):min(len(got), i+80)], want[max(0, i-80):min(len(want), i+80)])
		}
	}
	// Nothing at all is an empty object, as the reference has it.
	if got, _ := JSON(types.AwsSecurityFinding{}); string(got) != "{}" {
		t.Fatalf("empty finding: %s", got)
	}
}

var oddStrings = []string{"", "", "plain", "a<b>&c", `quote " and \ back`, "tab\tnew\nline", "é ü 日本", "\xff\xfe bad", "\u2028\u2029", "x\x00y"}

// fill sets v at random: about half the pointers, slices and maps stay nil, deeper
// levels more often.
func fill(rng *rand.Rand, v reflect.Value, depth int) {
	if depth > 6 {
		return
	}
	switch v.Kind() {
	case reflect.Pointer:
		if rng.IntN(2+depth) == 0 {
			v.Set(reflect.New(v.Type().Elem()))
			fill(rng, v.Elem(), depth+1)
		}
	case reflect.String:
		v.SetString(oddStrings[rng.IntN(len(oddStrings))])
	case reflect.Bool:
		v.SetBool(rng.IntN(2) == 0)
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		v.SetInt(int64(rng.IntN(2000) - 1000))
	case reflect.Float32, reflect.Float64:
		v.SetFloat([]float64{0, 1.5, -3, 1e21, 1e-7, 99.99}[rng.IntN(6)])
	case reflect.Struct:
		for i := range v.NumField() {
			if v.Type().Field(i).IsExported() {
				fill(rng, v.Field(i), depth)
			}
		}
	case reflect.Slice:
		if rng.IntN(2+depth) == 0 {
			n := rng.IntN(4)
			s := reflect.MakeSlice(v.Type(), n, n)
			for i := range n {
				fill(rng, s.Index(i), depth+1)
			}
			v.Set(s)
		}
	case reflect.Map:
		if rng.IntN(2+depth) == 0 && v.Type().Key().Kind() == reflect.String {
			m := reflect.MakeMap(v.Type())
			for range rng.IntN(4) {
				k := reflect.New(v.Type().Key()).Elem()
				fill(rng, k, depth+1)
				e := reflect.New(v.Type().Elem()).Elem()
				fill(rng, e, depth+1)
				m.SetMapIndex(k, e)
			}
			v.Set(m)
		}
	}
}

// BenchmarkJSON renders a finding as the replay prints each one.
//
//	go test -run '^$' -bench JSON ./pkg/asff
func BenchmarkJSON(b *testing.B) {
	f := Build(findings()[detect.TitleInside.Code()], product)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := JSON(f); err != nil {
			b.Fatal(err)
		}
	}
}
