package asn

import (
	"bytes"
	"net/netip"
	"os"
	"strings"
	"testing"

	"github.com/outsider-sec/outsider/pkg/detect"
)

func TestLookup(t *testing.T) {
	for _, path := range []string{"testdata/GeoLite2-ASN-Test.mmdb", "testdata/GeoIP2-ISP-Test.mmdb"} {
		db, err := Open(path)
		if err != nil {
			t.Fatal(err)
		}
		tests := map[string]Info{
			"31.224.40.4":      {3320, "Deutsche Telekom AG"},
			"::ffff:1.128.9.9": {1221, "Telstra Pty Ltd"},
			"27.192.8.8":       {4837, "CNCGROUP China169 Backbone"},
		}
		for ip, want := range tests {
			got, ok := db.Lookup(netip.MustParseAddr(ip))
			if !ok || got.Number != want.Number {
				t.Errorf("%s %s: %+v %v, want %+v", path, ip, got, ok, want)
			}
		}
		if _, ok := db.Lookup(netip.MustParseAddr("10.0.0.1")); ok {
			t.Errorf("%s: private address has an ASN", path)
		}
		if _, ok := db.Lookup(netip.Addr{}); ok {
			t.Errorf("%s: invalid address has an ASN", path)
		}
		db.Close()
	}
	var none *DB
	if _, ok := none.Lookup(netip.MustParseAddr("31.224.40.4")); ok {
		t.Error("nil DB answered")
	}
	if _, err := Open("testdata/missing.mmdb"); err == nil {
		t.Error("missing file opened")
	}
	if _, err := FromBytes([]byte("not a database")); err == nil {
		t.Error("garbage opened")
	}
	b, _ := os.ReadFile("testdata/GeoLite2-ASN-Test.mmdb")
	if db, err := FromBytes(b); err != nil {
		t.Error(err)
	} else if _, ok := db.Lookup(netip.MustParseAddr("31.224.40.4")); !ok {
		t.Error("in-memory database did not answer")
	}
}

func BenchmarkLookup(b *testing.B) {
	db, err := Open("testdata/GeoLite2-ASN-Test.mmdb")
	if err != nil {
		b.Fatal(err)
	}
	addrs := []netip.Addr{netip.MustParseAddr("31.224.40.4"), netip.MustParseAddr("1.128.9.9"), netip.MustParseAddr("2003:db8:aa::5"), netip.MustParseAddr("27.192.8.8")}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		db.Lookup(addrs[i&3])
		i++
	}
}

// TestCSVAndConversion: the ip-location-db range tables (a sample of the real data) answer
// like a MaxMind database, and convert to one that the MaxMind reader answers the same.
func TestCSVAndConversion(t *testing.T) {
	db, err := OpenAny("testdata/ip-location-db-asn-sample.csv.gz")
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]uint32{"31.224.40.4": 3320, "1.128.9.9": 1221, "27.192.8.8": 4837, "12.81.92.77": 7018, "2003::1": 3320, "::ffff:52.16.10.20": 16509}
	for ip, asn := range want {
		got, ok := db.Lookup(netip.MustParseAddr(ip))
		if !ok || got.Number != asn {
			t.Errorf("csv %s: %+v %v, want AS%d", ip, got, ok, asn)
		}
	}
	if _, ok := db.Lookup(netip.MustParseAddr("0.0.0.1")); ok {
		t.Error("an address before every range has an ASN")
	}
	var buf bytes.Buffer
	if err := db.WriteMMDB(&buf); err != nil {
		t.Fatal(err)
	}
	mm, err := FromBytes(buf.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	for ip, asn := range want {
		got, ok := mm.Lookup(netip.MustParseAddr(ip))
		if !ok || got.Number != asn || got.Org == "" {
			t.Errorf("converted %s: %+v %v, want AS%d", ip, got, ok, asn)
		}
	}
	for name, in := range map[string]string{"not csv": "\"unterminated", "not a range": "9.9.9.9,1.1.1.1,5,x", "mixed": "1.1.1.1,::1,5,x", "empty": ""} {
		if _, err := ReadCSV(strings.NewReader(in)); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

// A database answers the detector's question as it asks it.
var _ detect.ASNLookup = (*DB)(nil)
