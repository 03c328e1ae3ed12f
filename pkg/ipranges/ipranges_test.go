package ipranges

import (
	"bytes"
	"compress/gzip"
	"errors"
	"io"
	"math/rand/v2"
	"net/netip"
	"os"
	"testing"
	"time"
)

func load(t testing.TB, path string) *Ranges {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.HasPrefix(b, []byte{0x1f, 0x8b}) {
		zr, err := gzip.NewReader(bytes.NewReader(b))
		if err != nil {
			t.Fatal(err)
		}
		if b, err = io.ReadAll(zr); err != nil {
			t.Fatal(err)
		}
	}
	r, err := Parse(b)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestEmbedded(t *testing.T) {
	r := Embedded()
	if r.SyncToken != 1787411825 || r.CreateDate != "2026-08-22-15-17-05" {
		t.Errorf("embedded = %d %s", r.SyncToken, r.CreateDate)
	}
	// The same CIDR is listed once per service: unique counts from the data's README.
	if v4, v6 := r.Len(); v4 != 7905 || v6 != 3108 {
		t.Errorf("unique prefixes = %d, %d; want 7905, 3108", v4, v6)
	}
}

func TestLookup(t *testing.T) {
	r := Embedded()
	tests := []struct {
		addr    string
		inside  bool
		region  string
		service string
	}{
		{"52.16.10.20", true, "eu-west-1", "EC2"},
		{"::ffff:52.16.10.20", true, "eu-west-1", "EC2"}, // IPv4-mapped is unmapped
		{"1.178.86.1", true, "ap-southeast-3", "EC2"},    // the update of 15:17
		{"1.128.9.9", false, "", ""},
		{"2003:db8:aa::5", false, "", ""},
		{"2406:daba:f000::1", true, "ap-southeast-4", "AMAZON"},
	}
	for _, tc := range tests {
		info, ok := r.Lookup(netip.MustParseAddr(tc.addr))
		if ok != tc.inside || r.Contains(netip.MustParseAddr(tc.addr)) != tc.inside {
			t.Errorf("%s: inside = %v, want %v", tc.addr, ok, tc.inside)
			continue
		}
		if !ok {
			continue
		}
		if info.Region != tc.region {
			t.Errorf("%s: region = %s, want %s", tc.addr, info.Region, tc.region)
		}
		found := false
		for _, s := range info.Services {
			found = found || s == tc.service
		}
		if !found {
			t.Errorf("%s: services %v lack %s", tc.addr, info.Services, tc.service)
		}
	}
}

func TestSchemasAndUpdates(t *testing.T) {
	old := load(t, "testdata/ip-ranges.2018-12-28.json")
	if v4, v6 := old.Len(); v4 != 866 || v6 != 299 {
		t.Errorf("2018 unique prefixes = %d, %d; want 866, 299", v4, v6)
	}
	before := load(t, "testdata/ip-ranges.2026-08-22T1157.json.gz")
	if before.Contains(netip.MustParseAddr("1.178.86.1")) {
		t.Error("1.178.86.0/24 is in the 11:57 publication")
	}
	cur := NewCurrent(before)
	if err := cur.Update(Embedded()); err != nil {
		t.Fatalf("newer update: %v", err)
	}
	if !cur.Load().Contains(netip.MustParseAddr("1.178.86.1")) {
		t.Error("update not visible")
	}
	if err := cur.Update(before); !errors.Is(err, ErrStale) {
		t.Errorf("going back to an older syncToken: err = %v", err)
	}
	if err := cur.Update(old); !errors.Is(err, ErrStale) {
		t.Errorf("going back to 2018: err = %v", err)
	}
}

func TestParseErrors(t *testing.T) {
	for name, in := range map[string]string{
		"not json":    "<html>",
		"bad token":   `{"syncToken":"x","prefixes":[{"ip_prefix":"1.0.0.0/8"}]}`,
		"bad prefix":  `{"syncToken":"1","prefixes":[{"ip_prefix":"1.0.0.0/99"}]}`,
		"no prefixes": `{"syncToken":"1","prefixes":[]}`,
		"truncated":   `{"syncToken":"1","prefixes":[{"ip_prefix":"1.0.0.0/8"`,
	} {
		if _, err := Parse([]byte(in)); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}

// BenchmarkLookup: one lookup over the real snapshot, a realistic mix of addresses inside
// and outside AWS, IPv4 and IPv6.
func BenchmarkLookup(b *testing.B) {
	r := Embedded()
	rng := rand.New(rand.NewPCG(42, 42))
	addrs := make([]netip.Addr, 4096)
	for i := range addrs {
		if i%4 == 0 {
			var a [16]byte
			a[0], a[1] = 0x24, 0x06
			for j := 2; j < 16; j++ {
				a[j] = byte(rng.UintN(256))
			}
			addrs[i] = netip.AddrFrom16(a)
			continue
		}
		addrs[i] = netip.AddrFrom4([4]byte{byte(rng.UintN(224)), byte(rng.UintN(256)), byte(rng.UintN(256)), byte(rng.UintN(256))})
	}
	addrs[0] = netip.MustParseAddr("52.16.10.20")
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		r.Contains(addrs[i&4095])
		i++
	}
}

// FuzzParse: any file the refresher could be served, or find in its bucket, parses or is
// refused with an error, never a panic; what parses and passes Plausible covers no
// prefix wider than the bounds. Seeded with the real snapshots.
//
//	go test ./pkg/ipranges -run '^$' -fuzz FuzzParse -fuzztime 10m
func FuzzParse(f *testing.F) {
	for _, p := range []string{"testdata/ip-ranges.2018-12-28.json", "testdata/ip-ranges.2026-08-22T1157.json.gz", "ip-ranges.json.gz"} {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		if bytes.HasPrefix(b, []byte{0x1f, 0x8b}) {
			zr, _ := gzip.NewReader(bytes.NewReader(b))
			b, _ = io.ReadAll(zr)
		}
		f.Add(b[:min(len(b), 4096)])
	}
	f.Add([]byte(`{"syncToken":"1","prefixes":[{"ip_prefix":"0.0.0.0/0","region":"GLOBAL","service":"AMAZON"}],"ipv6_prefixes":[{"ipv6_prefix":"::/0","region":"GLOBAL","service":"AMAZON"}]}`))
	f.Add([]byte(`{"syncToken":"9223372036854775807","prefixes":[{"ip_prefix":"3.4.12.4/32","region":"eu-west-1","service":"AMAZON"}]}`))
	now := time.Date(2026, 11, 30, 0, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := Parse(b)
		if err != nil {
			return
		}
		if r.Plausible(now) != nil {
			return
		}
		for _, a := range []string{"0.0.0.1", "128.0.0.1", "::1", "8000::1"} {
			if info, ok := r.Lookup(netip.MustParseAddr(a)); ok && (info.Prefix.Addr().Is4() && info.Prefix.Bits() < minBits4 || info.Prefix.Addr().Is6() && info.Prefix.Bits() < minBits6) {
				t.Fatalf("a plausible file holds %s", info.Prefix)
			}
		}
	})
}
