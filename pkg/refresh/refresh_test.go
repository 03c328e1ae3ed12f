package refresh

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/md5"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/outsider-sec/outsider/internal/mototest"
	"github.com/outsider-sec/outsider/pkg/asn"
	"github.com/outsider-sec/outsider/pkg/ipranges"
)

func TestMain(m *testing.M) { os.Exit(mototest.Main(m)) }

func gunzip(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	zr, err := gzip.NewReader(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	out, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// server serves whatever body the test sets, as AWS's URL would.
type server struct {
	mu   sync.Mutex
	body []byte
}

func (s *server) set(b []byte) { s.mu.Lock(); s.body = b; s.mu.Unlock() }

func (s *server) ServeHTTP(w http.ResponseWriter, _ *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	w.Write(s.body)
}

func md5hex(b []byte) string { s := md5.Sum(b); return hex.EncodeToString(s[:]) }

// TestRefreshAndReload: the real update of 2026-08-22 (1.178.86.0/24 added) reaches the
// detector's ranges through S3; stale, corrupt and collapsed files are refused and the
// ranges in use are kept.
func TestRefreshAndReload(t *testing.T) {
	ctx := context.Background()
	cfg := mototest.Config(t, nil)
	client := s3.NewFromConfig(cfg, func(o *s3.Options) { o.UsePathStyle = true })
	bucket := "outsider-ranges-test"
	if _, err := client.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String(bucket)}); err != nil {
		t.Fatal(err)
	}
	before := gunzip(t, "../ipranges/testdata/ip-ranges.2026-08-22T1157.json.gz")
	after := gunzip(t, "../ipranges/ip-ranges.json.gz")
	srv := &server{}
	hs := httptest.NewServer(srv)
	defer hs.Close()
	r := &Refresher{HTTP: hs.Client(), URL: hs.URL, S3: client, Bucket: bucket, Key: "ip-ranges.json",
		Now: func() time.Time { return time.Date(2026, 8, 22, 16, 0, 0, 0, time.UTC) }}

	// The detector starts on the 11:57 publication (as if that were its embedded snapshot).
	old, err := ipranges.Parse(before)
	if err != nil {
		t.Fatal(err)
	}
	current := ipranges.NewCurrent(old)
	clock := time.Date(2026, 8, 22, 16, 0, 0, 0, time.UTC)
	w := &Watcher{S3: client, Bucket: bucket, Key: "ip-ranges.json", Ranges: current, Every: 5 * time.Minute, Now: func() time.Time { return clock }}
	added := netip.MustParseAddr("1.178.86.1")
	if err := w.Check(ctx); err != nil || current.Contains(added) {
		t.Fatalf("nothing stored yet: %v, %v", err, current.Contains(added))
	}

	// AWS announces 15:17 and serves it.
	srv.set(after)
	res, err := r.Run(ctx, &Notice{SyncToken: "1787411825", MD5: md5hex(after)})
	if err != nil || !res.Stored || res.SyncToken != 1787411825 {
		t.Fatalf("refresh: %+v, %v", res, err)
	}
	if err := w.Check(ctx); err != nil || current.Contains(added) {
		t.Fatalf("looked again within 5 minutes: %v, %v", err, current.Contains(added))
	}
	clock = clock.Add(6 * time.Minute)
	if err := w.Check(ctx); err != nil || !current.Contains(added) {
		t.Fatalf("the update is not visible to the detector: %v", err)
	}

	// A late notice of the 11:57 publication: not newer, nothing stored.
	srv.set(before)
	if res, err := r.Run(ctx, &Notice{SyncToken: "1787399825", MD5: md5hex(before)}); err != nil || res.Stored {
		t.Errorf("out-of-order notice: %+v, %v", res, err)
	}
	// Corrupt, md5 mismatch, collapsed, and a URL still serving an older file: refused.
	for name, tc := range map[string]struct {
		body   []byte
		notice *Notice
	}{
		"truncated":                 {after[:len(after)/2], nil},
		"md5 mismatch":              {after, &Notice{MD5: "0123456789abcdef0123456789abcdef"}},
		"collapsed":                 {[]byte(`{"syncToken":"1787500000","createDate":"2026-08-23-00-00-00","prefixes":[{"ip_prefix":"3.4.12.4/32","region":"eu-west-1","service":"AMAZON"}],"ipv6_prefixes":[]}`), nil},
		"stale at url":              {after, &Notice{SyncToken: "1787500000"}},
		"html error":                {[]byte("<html>503</html>"), nil},
		"covers the internet":       {tampered(after, "1787500000", `{"ip_prefix":"0.0.0.0/0","region":"GLOBAL","service":"AMAZON"},`, `{"ipv6_prefix":"::/0","region":"GLOBAL","service":"AMAZON"},`), nil},
		"a prefix wider than AWS's": {tampered(after, "1787500000", `{"ip_prefix":"64.0.0.0/3","region":"us-east-1","service":"EC2"},`, ""), nil},
		"syncToken in the future":   {tampered(after, "9223372036854775807", "", ""), nil},
		// Every prefix as wide as allowed, published 23 hours ahead, dated consistently:
		// the whole IPv4 space would be inside.
		"the space in /8s":                   {republished(after, 1787411825+23*3600, slash8s(0, 256)), nil},
		"syncToken not its createDate":       {tampered(after, "1787500000", "", ""), nil},
		"three and a half times AWS's share": {republished(after, 1787500000, slash8s(64, 16)), nil},
	} {
		srv.set(tc.body)
		res, err := r.Run(ctx, tc.notice)
		if err == nil || res.Stored {
			t.Errorf("%s: accepted: %+v", name, res)
		}
		if name != "stale at url" && !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: error %v is not ErrInvalid", name, err)
		}
	}
	clock = clock.Add(time.Hour)
	if err := w.Check(ctx); err != nil || !current.Contains(added) || current.Load().SyncToken != 1787411825 {
		t.Errorf("the ranges in use changed: %v, token %d", err, current.Load().SyncToken)
	}
	// Someone other than the refresher writes a blinding file into the bucket: the
	// detector refuses it and keeps the ranges it has.
	blind := tampered(after, "9223372036854775807", `{"ip_prefix":"0.0.0.0/0","region":"GLOBAL","service":"AMAZON"},`, `{"ipv6_prefix":"::/0","region":"GLOBAL","service":"AMAZON"},`)
	if _, err := client.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(bucket), Key: aws.String("ip-ranges.json"), Body: bytes.NewReader(blind)}); err != nil {
		t.Fatal(err)
	}
	clock = clock.Add(time.Hour)
	attacker := netip.MustParseAddr("27.192.8.10")
	if err := w.Check(ctx); !errors.Is(err, ipranges.ErrImplausible) || current.Contains(attacker) || current.Load().SyncToken != 1787411825 {
		t.Errorf("a tampered file was loaded: %v, token %d", err, current.Load().SyncToken)
	}
	// A write whose metadata claims a far newer file: "newer" is read from the file, so
	// AWS's next publication is stored all the same.
	if _, err := client.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(bucket), Key: aws.String("ip-ranges.json"), Body: bytes.NewReader(before),
		Metadata: map[string]string{"synctoken": "9999999999", "prefixes": "99999"}}); err != nil {
		t.Fatal(err)
	}
	next := republished(after, 1787500000, "")
	srv.set(next)
	if res, err := r.Run(ctx, nil); err != nil || !res.Stored {
		t.Errorf("a newer file not stored over a poisoned one: %+v, %v", res, err)
	}
}

// republished rewrites an ip-ranges.json as if published at token (syncToken and createDate
// agree), with prefixes added at the head of its IPv4 list.
func republished(b []byte, token int64, v4 string) []byte {
	s := strings.Replace(string(b), `"syncToken": "1787411825"`, fmt.Sprintf(`"syncToken": "%d"`, token), 1)
	s = strings.Replace(s, `"createDate": "2026-08-22-15-17-05"`, `"createDate": "`+time.Unix(token, 0).UTC().Format("2006-01-02-15-04-05")+`"`, 1)
	return []byte(strings.Replace(s, `"prefixes": [`, `"prefixes": [`+v4, 1))
}

// slash8s lists n prefixes N.0.0.0/8 from first on.
func slash8s(first, n int) string {
	var b strings.Builder
	for i := first; i < first+n; i++ {
		fmt.Fprintf(&b, `{"ip_prefix":"%d.0.0.0/8","region":"us-east-1","service":"EC2"},`, i)
	}
	return b.String()
}

// tampered rewrites an ip-ranges.json: its syncToken, and prefixes added at the head of
// each list.
func tampered(b []byte, token, v4, v6 string) []byte {
	s := strings.Replace(string(b), `"syncToken": "1787411825"`, `"syncToken": "`+token+`"`, 1)
	s = strings.Replace(s, `"prefixes": [`, `"prefixes": [`+v4, 1)
	s = strings.Replace(s, `"ipv6_prefixes": [`, `"ipv6_prefixes": [`+v6, 1)
	return []byte(s)
}

func TestParseNotice(t *testing.T) {
	n, err := ParseNotice(`{"create-time":"2026-08-22-15-17-05","synctoken":"1787411825","md5":"6e48ad3b2d2ea89dc5ed9b2a50e3e99f","url":"https://ip-ranges.amazonaws.com/ip-ranges.json"}`)
	if err != nil || n.SyncToken != "1787411825" || n.URL == "" {
		t.Errorf("%+v %v", n, err)
	}
	for _, bad := range []string{"", "not json", `{"hello":1}`} {
		if _, err := ParseNotice(bad); err == nil {
			t.Errorf("ParseNotice(%q) accepted", bad)
		}
	}
}

// TestASNConversion: keyless tables served over HTTP become a MaxMind database in S3 that
// answers the tables' ASNs; a broken table leaves the stored database alone.
func TestASNConversion(t *testing.T) {
	ctx := context.Background()
	client := s3.NewFromConfig(mototest.Config(t, nil), func(o *s3.Options) { o.UsePathStyle = true })
	bucket := "outsider-asn-test"
	if _, err := client.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String(bucket)}); err != nil {
		t.Fatal(err)
	}
	table, err := os.ReadFile("../asn/testdata/ip-location-db-asn-sample.csv.gz")
	if err != nil {
		t.Fatal(err)
	}
	srv := &server{}
	srv.set(table)
	hs := httptest.NewServer(srv)
	defer hs.Close()
	c := &ASNConverter{HTTP: hs.Client(), Sources: []string{hs.URL + "/asn-ipv4.csv.gz"}, S3: client, Bucket: bucket, Key: "asn.mmdb"}
	if due, err := c.Due(ctx, time.Now(), 24*time.Hour); err != nil || !due {
		t.Fatalf("nothing stored: due %v, %v", due, err)
	}
	n, err := c.Run(ctx)
	if err != nil || n == 0 {
		t.Fatalf("convert: %d, %v", n, err)
	}
	if due, err := c.Due(ctx, time.Now(), 24*time.Hour); err != nil || due {
		t.Fatalf("just stored: due %v, %v", due, err)
	}
	obj, err := client.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(bucket), Key: aws.String("asn.mmdb")})
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(obj.Body)
	db, err := asn.FromBytes(b)
	if err != nil {
		t.Fatal(err)
	}
	if info, ok := db.Lookup(netip.MustParseAddr("31.224.40.4")); !ok || info.Number != 3320 {
		t.Errorf("31.224.40.4: %+v %v", info, ok)
	}
	srv.set([]byte("9.9.9.9,1.1.1.1,5,backwards\n"))
	if _, err := c.Run(ctx); !errors.Is(err, ErrInvalid) {
		t.Errorf("a broken table: %v", err)
	}
}
