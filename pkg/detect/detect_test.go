package detect

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"os/exec"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/outsider-sec/outsider/pkg/asn"
	"github.com/outsider-sec/outsider/pkg/cloudtrail"
	"github.com/outsider-sec/outsider/pkg/ipranges"
	"github.com/outsider-sec/outsider/pkg/store"
)

// countingStore is the reference store, counting the detector's calls.
type countingStore struct {
	*store.Memory
	calls atomic.Int64 // two detectors (shards) may share one
}

func newCountingStore() *countingStore { return &countingStore{Memory: store.NewMemory()} }

func (s *countingStore) Get(ctx context.Context, k string, now time.Time) ([]byte, bool, error) {
	s.calls.Add(1)
	return s.Memory.Get(ctx, k, now)
}

func (s *countingStore) Put(ctx context.Context, k string, v []byte, exp time.Time) error {
	s.calls.Add(1)
	return s.Memory.Put(ctx, k, v, exp)
}

func (s *countingStore) Claim(ctx context.Context, k string, v []byte, now, exp time.Time) (bool, error) {
	s.calls.Add(1)
	return s.Memory.Claim(ctx, k, v, now, exp)
}

func (s *countingStore) Swap(ctx context.Context, k string, old, v []byte, exp time.Time) (bool, error) {
	s.calls.Add(1)
	return s.Memory.Swap(ctx, k, old, v, exp)
}

const (
	acct   = "210987654321"
	region = "eu-west-1"
	awsIP  = "52.16.10.20" // EC2 eu-west-1 in the embedded ranges
	cgIP   = "27.192.8.8"  // AS4837, outside AWS
	telIP  = "1.128.9.9"   // AS1221, outside AWS
)

var t0 = time.Date(2026, 3, 2, 0, 0, 0, 0, time.UTC)

func day(d int, sec int) time.Time {
	return t0.Add(time.Duration(d)*24*time.Hour + time.Duration(sec)*time.Second)
}

func roleSession(role, name, key string) cloudtrail.Identity {
	return cloudtrail.Identity{
		Type: "AssumedRole", ARN: "arn:aws:sts::" + acct + ":assumed-role/" + role + "/" + name, AccountID: acct, AccessKeyID: key,
		IssuerARN: "arn:aws:iam::" + acct + ":role/" + role, IssuerAccount: acct, IssuerName: role,
	}
}

var eventN int

func rec(at time.Time, id cloudtrail.Identity, name, ip, ua string) *cloudtrail.Record {
	eventN++
	return &cloudtrail.Record{
		EventID: "ev" + strings.Repeat("x", eventN%3) + time.Duration(eventN).String(), Time: at, Source: "s3.amazonaws.com", Name: name, Region: region,
		SourceIP: ip, Addr: cloudtrail.ParseAddr(ip), UserAgent: ua, RecipientAccount: acct, Identity: id,
	}
}

func lambdaIssues(at time.Time, role, key string) *cloudtrail.Record {
	r := rec(at, cloudtrail.Identity{Type: "AWSService", InvokedBy: "lambda.amazonaws.com"}, "AssumeRole", "lambda.amazonaws.com", "lambda.amazonaws.com")
	r.Source = "sts.amazonaws.com"
	r.Request = cloudtrail.Request{RoleARN: "arn:aws:iam::" + acct + ":role/" + role, RoleSessionName: "awslambda_1_x"}
	r.IssuedKeyID = key
	return r
}

func newDetector(t *testing.T, s Store, mutate func(*Config)) *Detector {
	t.Helper()
	cfg := Default()
	if mutate != nil {
		mutate(&cfg)
	}
	db, err := asn.Open("../asn/testdata/GeoLite2-ASN-Test.mmdb")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	d, err := New(cfg, s, ipranges.Embedded(), db)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// run processes each record in a batch of its own and returns what the flushes hand on.
func run(t *testing.T, d *Detector, recs ...*cloudtrail.Record) []Change {
	t.Helper()
	var out []Change
	for _, r := range recs {
		out = append(out, flushed(t, d, r)...)
	}
	return out
}

// flushed processes recs in one batch of d and returns what its flush hands on.
func flushed(t *testing.T, d *Detector, recs ...*cloudtrail.Record) []Change {
	t.Helper()
	for _, r := range recs {
		if _, err := d.Process(context.Background(), r); err != nil {
			t.Fatal(err)
		}
	}
	ch, err := d.Flush(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return ch
}

// history starts the account on day 0 and lets Lambda issue fn's role a key daily.
func history(days int, fn, role string) []*cloudtrail.Record {
	var out []*cloudtrail.Record
	for d := 0; d < days; d++ {
		k := "ASIAKEY" + fn + time.Duration(d).String()
		out = append(out, lambdaIssues(day(d, 60), role, k))
		out = append(out, rec(day(d, 120), roleSession(role, fn, k), "PutObject", awsIP, "aws-sdk-go-v2/1.32.2"))
	}
	return out
}

func TestTitles(t *testing.T) {
	const fn, role = "orders", "orders-role"
	key := "ASIAKEY" + fn + time.Duration(20).String() // issued on day 20, used inside that day
	fresh := "ASIAFRESHNOTSEEN0001"
	tests := []struct {
		name    string
		extra   []*cloudtrail.Record
		title   Title
		subject string
		signals []string
	}{
		{"plain remote", []*cloudtrail.Record{rec(day(20, 30000), roleSession(role, fn, fresh), "ListBuckets", cgIP, "python-requests/2.32.3")},
			TitleRemote, fn, []string{SignalOutside}},
		{"cli", []*cloudtrail.Record{rec(day(20, 30000), roleSession(role, fn, key), "ListBuckets", cgIP, "aws-cli/2.22.0 md/command#s3.ls")},
			TitleCLI, fn, []string{SignalOutside, SignalCLI, SignalKeyInside}},
		{"key also inside", []*cloudtrail.Record{rec(day(20, 30000), roleSession(role, fn, key), "ListBuckets", "::ffff:"+cgIP, "python-requests/2.32.3")},
			TitleInside, fn, []string{SignalOutside, SignalKeyInside}},
		{"session not a function", []*cloudtrail.Record{rec(day(20, 30000), roleSession(role, "tmp-debug", fresh), "ListBuckets", cgIP, "aws-cli/2.22.0")},
			TitleRole, role, []string{SignalOutside, SignalNotIssued, SignalCLI}},
		{"known asn", []*cloudtrail.Record{
			rec(day(19, 100), cloudtrail.Identity{Type: "IAMUser", ARN: "arn:aws:iam::" + acct + ":user/dana", AccountID: acct, AccessKeyID: "AKIADANA"}, "ListBuckets", "1.128.200.1", "Mozilla/5.0"),
			rec(day(20, 30000), roleSession(role, fn, fresh), "ListBuckets", telIP, "python-requests/2.32.3")},
			TitleKnownASN, fn, []string{SignalOutside, SignalKnownASN}},
		{"failed calls count", []*cloudtrail.Record{func() *cloudtrail.Record {
			r := rec(day(20, 30000), roleSession(role, fn, fresh), "ListBuckets", cgIP, "python-requests/2.32.3")
			r.ErrorCode = "AccessDenied"
			return r
		}()}, TitleRemote, fn, []string{SignalOutside, SignalFailedCalls}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d := newDetector(t, newCountingStore(), nil)
			// The function is learned from its own calls (exec-env).
			learnFn := rec(day(0, 10), roleSession(role, fn, "ASIALEARN"), "PutObject", awsIP, "aws-sdk-java/2.28.1 exec-env/AWS_Lambda_java21")
			recs := append([]*cloudtrail.Record{learnFn}, history(21, fn, role)...)
			ch := run(t, d, append(recs, tc.extra...)...)
			if len(ch) != 1 {
				t.Fatalf("changes = %d, want 1: %+v", len(ch), ch)
			}
			f := ch[0].Finding
			subject := f.Subject
			if f.SubjectKind == SubjectFunction {
				subject = f.Function
			}
			if f.Title != tc.title || subject != tc.subject || !ch[0].New {
				t.Errorf("got %q about %s (new %v), want %q about %s", f.Title, subject, ch[0].New, tc.title, tc.subject)
			}
			if diff := cmp.Diff(tc.signals, f.Signals); diff != "" {
				t.Errorf("signals (-want +got):\n%s", diff)
			}
			if f.Severity != Default().Severity[tc.title] {
				t.Errorf("severity %s", f.Severity)
			}
		})
	}
}

func TestNotOutside(t *testing.T) {
	const fn, role = "orders", "orders-role"
	key := "ASIAKEY" + fn + time.Duration(20).String()
	vpce := rec(day(20, 30000), roleSession(role, fn, key), "GetObject", "10.1.2.3", "aws-sdk-go-v2")
	vpce.VPCEndpointID = "vpce-0123"
	// invokedBy with an AWS address: AWS acting for the function. (With a public address
	// outside AWS it silences nothing: TestEvasions.)
	service := rec(day(20, 30001), roleSession(role, fn, key), "Decrypt", awsIP, "python-requests")
	service.Identity.InvokedBy = "lambda.amazonaws.com"
	trusted := rec(day(20, 30002), roleSession(role, fn, key), "GetObject", "31.224.40.4", "aws-cli/2.22.0")
	for name, r := range map[string]*cloudtrail.Record{
		"vpc endpoint":          vpce,
		"aws service on behalf": service,
		"trusted network":       trusted,
		"aws internal":          rec(day(20, 30003), roleSession(role, fn, key), "Decrypt", "AWS Internal", "AWS Internal"),
		"scrambled address":     rec(day(20, 30004), roleSession(role, fn, key), "Decrypt", "253.252.51.07", "aws-cli/2"),
		"ec2 role outside":      rec(day(20, 30005), roleSession("web-asg-role", "i-0123", "ASIAEC2"), "ListBuckets", cgIP, "aws-cli/2"),
		"iam user outside":      rec(day(20, 30006), cloudtrail.Identity{Type: "IAMUser", AccountID: acct, AccessKeyID: "AKIAX"}, "ListBuckets", cgIP, "aws-cli/2"),
	} {
		t.Run(name, func(t *testing.T) {
			d := newDetector(t, newCountingStore(), func(c *Config) { c.Trusted, _ = ParseCIDRs("31.224.40.0/24") })
			if ch := run(t, d, append(history(21, fn, role), r)...); len(ch) != 0 {
				t.Errorf("finding for a call that is not outside: %+v", ch[0].Finding)
			}
		})
	}
}

func TestActivationAndDedup(t *testing.T) {
	const fn, role = "orders", "orders-role"
	use := func(d, sec int) *cloudtrail.Record {
		return rec(day(d, sec), roleSession(role, fn, "ASIASTOLEN"), "ListBuckets", cgIP, "python-requests")
	}
	d := newDetector(t, newCountingStore(), nil)
	recs := history(30, fn, role)
	// Day 10 is inside the activation period: nothing, but still learned from.
	ch := run(t, d, append(recs[:22], use(10, 50000))...)
	if len(ch) != 0 || d.Stats.Inactive != 1 {
		t.Fatalf("activation: %d changes, %d inactive", len(ch), d.Stats.Inactive)
	}
	ch = run(t, d, recs[22:]...)
	ch = append(ch, run(t, d, use(15, 100), use(18, 100), use(22, 100), use(22, 100))...)
	var news, updates []string
	for _, c := range ch {
		if c.New {
			news = append(news, c.Finding.ID)
		} else {
			updates = append(updates, c.Finding.ID)
		}
	}
	// Day 15 opens a window; day 18 updates it; day 22 is past 7 days: a new finding.
	if len(news) != 2 || len(updates) != 2 || news[0] == news[1] {
		t.Fatalf("new %v, updated %v", news, updates)
	}
	last := ch[len(ch)-1].Finding
	if last.Count != 2 {
		t.Errorf("day-22 finding count = %d, want 2", last.Count)
	}
}

func TestRedeliveryCountsOnce(t *testing.T) {
	const fn, role = "orders", "orders-role"
	d := newDetector(t, newCountingStore(), nil)
	steal := rec(day(20, 100), roleSession(role, fn, "ASIASTOLEN"), "ListBuckets", cgIP, "python-requests")
	ch := run(t, d, append(history(21, fn, role), steal, steal, steal)...)
	if got := ch[len(ch)-1].Finding.Count; got != 1 {
		t.Errorf("count after redelivery = %d, want 1", got)
	}
	if d.Stats.Redelivered != 2 {
		t.Errorf("redelivered = %d", d.Stats.Redelivered)
	}
}

func TestAssumedByAnotherIdentity(t *testing.T) {
	const fn, role = "orders", "orders-role"
	d := newDetector(t, newCountingStore(), nil)
	assume := rec(day(20, 100), cloudtrail.Identity{Type: "IAMUser", ARN: "arn:aws:iam::" + acct + ":user/mallory", AccountID: acct, AccessKeyID: "AKIAM"}, "AssumeRole", cgIP, "aws-cli/2")
	assume.Source = "sts.amazonaws.com"
	assume.Request.RoleARN = "arn:aws:iam::" + acct + ":role/" + role
	assume.IssuedKeyID = "ASIAMALLORY"
	// The session is even named like the function: Lambda still did not issue it.
	use := rec(day(20, 200), roleSession(role, fn, "ASIAMALLORY"), "ListBuckets", cgIP, "python-requests")
	ch := run(t, d, append(history(21, fn, role), assume, use)...)
	if len(ch) != 1 || ch[0].Finding.Title != TitleRole || ch[0].Finding.IssuedBy != "arn:aws:iam::"+acct+":user/mallory" {
		t.Fatalf("got %+v", ch)
	}
}

// TestHotPath: records from inside AWS by identities that are not Lambda sessions touch
// no store once an account and a role have been seen.
func TestHotPath(t *testing.T) {
	s := newCountingStore()
	d := newDetector(t, s, nil)
	warm := []*cloudtrail.Record{
		rec(day(0, 1), cloudtrail.Identity{Type: "IAMUser", AccountID: acct, AccessKeyID: "AKIAX"}, "GetRole", awsIP, "terraform"),
		rec(day(0, 2), roleSession("web-asg-role", "i-0", "ASIAEC2"), "DescribeInstances", awsIP, "aws-sdk-go"),
	}
	run(t, d, warm...)
	before := s.calls.Load()
	var hot []*cloudtrail.Record
	for i := 0; i < 1000; i++ {
		hot = append(hot,
			rec(day(0, 10+i), cloudtrail.Identity{Type: "IAMUser", AccountID: acct, AccessKeyID: "AKIAX"}, "GetRole", awsIP, "terraform"),
			rec(day(0, 10+i), roleSession("web-asg-role", "i-0", "ASIAEC2"), "DescribeInstances", awsIP, "aws-sdk-go"),
			rec(day(0, 10+i), cloudtrail.Identity{Type: "AWSService", InvokedBy: "config.amazonaws.com"}, "GetBucketAcl", "config.amazonaws.com", "config.amazonaws.com"),
			rec(day(0, 10+i), roleSession("web-asg-role", "i-0", "ASIAEC2"), "Decrypt", "AWS Internal", "AWS Internal"),
		)
	}
	run(t, d, hot...)
	if got := s.calls.Load() - before; got != 0 {
		t.Errorf("%d store calls for 4000 inside records of non-Lambda identities, want 0", got)
	}
}

func TestClassify(t *testing.T) {
	d := newDetector(t, newCountingStore(), func(c *Config) { c.Trusted, _ = ParseCIDRs("31.224.40.0/24,2001:db8:1::/48") })
	for ip, want := range map[string]Where{
		awsIP: AWS, "::ffff:52.16.10.20": AWS, cgIP: Outside, "2003:db8:aa::5": Outside, "31.224.40.9": Trusted,
		"10.0.0.1": Private, "100.64.1.1": Private, "169.254.169.254": Private, "192.0.2.1": Private, "fd00::1": Private,
		"2001:db8::1": Private, "224.0.0.1": Private, "lambda.amazonaws.com": NotAnAddress, "AWS Internal": NotAnAddress,
	} {
		if got, _ := d.classify(context.Background(), &cloudtrail.Record{Addr: cloudtrail.ParseAddr(ip)}); got != want {
			t.Errorf("%s: %s, want %s", ip, got, want)
		}
	}
}

func TestCommandLine(t *testing.T) {
	for ua, want := range map[string]bool{
		"aws-cli/2.22.0 md/awscrt#0.22.0":                                       true,
		"aws-cli/1.16.301 Python/3.7.5 Linux/5.3.0-kali2-amd64":                 true,
		"AWSPowerShell.Common/4.1.600.0 .NET_Runtime/8.0 WindowsPowerShell/5.1": true,
		"Boto3/1.26 Python/3.10 Linux/5.15 Botocore/1.29 Pacu":                  true,
		"python-requests/2.32.3":                                                false,
		"aws-sdk-go-v2/1.32.2 os/linux":                                         false,
		"console.amazonaws.com":                                                 false,
	} {
		if got := CommandLine(ua); got != want {
			t.Errorf("CommandLine(%q) = %v", ua, got)
		}
	}
}

func TestTrustsLambda(t *testing.T) {
	for doc, want := range map[string]bool{
		`{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"Service":"lambda.amazonaws.com"},"Action":"sts:AssumeRole"}]}`:                                          true,
		`{"Statement":{"Effect":"Allow","Principal":{"Service":["ec2.amazonaws.com","edgelambda.amazonaws.com"]},"Action":["sts:AssumeRole"]}}`:                                       true,
		`%7B%22Statement%22%3A%5B%7B%22Effect%22%3A%22Allow%22%2C%22Principal%22%3A%7B%22Service%22%3A%22lambda.amazonaws.com%22%7D%2C%22Action%22%3A%22sts%3AAssumeRole%22%7D%5D%7D`: true,
		`{"Statement":[{"Effect":"Deny","Principal":{"Service":"lambda.amazonaws.com"},"Action":"sts:AssumeRole"}]}`:                                                                  false,
		`{"Statement":[{"Effect":"Allow","Principal":{"Service":"ec2.amazonaws.com"},"Action":"sts:AssumeRole"}]}`:                                                                    false,
		`{"Statement":[{"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::1:root"},"Action":"sts:AssumeRole"}]}`:                                                                      false,
		`not a policy`: false,
	} {
		if got := trustsLambda(doc); got != want {
			t.Errorf("trustsLambda(%.60s) = %v", doc, got)
		}
	}
}

func TestConfig(t *testing.T) {
	if err := Default().Validate(); err != nil {
		t.Fatal(err)
	}
	bad := Default()
	bad.Training, bad.Dedup = 0, -1
	bad.Severity = map[Title]string{TitleCLI: "LOUD"}
	err := bad.Validate()
	for _, want := range []string{"training", "deduplication", "LOUD", "no severity"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Validate() = %v, want it to name %q", err, want)
		}
	}
	if d, err := ParseDuration("14d"); err != nil || d != 14*24*time.Hour {
		t.Errorf("14d = %v, %v", d, err)
	}
	if _, err := ParseDuration("fortnight"); err == nil {
		t.Error("fortnight parsed")
	}
	p, err := ParseCIDRs(" 31.224.40.0/24, ::ffff:1.2.3.0/120, 9.9.9.9 ")
	want := []netip.Prefix{netip.MustParsePrefix("31.224.40.0/24"), netip.MustParsePrefix("1.2.3.0/24"), netip.MustParsePrefix("9.9.9.9/32")}
	if err != nil || !cmp.Equal(p, want, cmp.Comparer(func(a, b netip.Prefix) bool { return a == b })) {
		t.Errorf("ParseCIDRs = %v, %v", p, err)
	}
	c := Default()
	if err := c.ParseSeverities("cli=critical,remote=LOW"); err != nil || c.Severity[TitleCLI] != "CRITICAL" || c.Severity[TitleRemote] != "LOW" {
		t.Errorf("ParseSeverities: %v %v", c.Severity, err)
	}
	if err := c.ParseSeverities("nope=LOW"); err == nil {
		t.Error("unknown title code accepted")
	}
}

// TestDependencies: the decision depends on the standard library, its record, the
// identifiers' shapes and the two libraries it needs (the prefix table, the JSON decoder;
// the record's parser brings its gzip reader). Nothing of AWS's SDK, Lambda's runtime, a
// database or an ASN file format.
func TestDependencies(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", "-f", "{{if not .Standard}}{{.ImportPath}}{{end}}", ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	allowed := []string{
		"github.com/outsider-sec/outsider/pkg/detect",
		"github.com/outsider-sec/outsider/pkg/cloudtrail",
		"github.com/outsider-sec/outsider/pkg/awsid",
		"github.com/gaissmai/bart",
		"github.com/goccy/go-json",
		"github.com/klauspost/compress",
	}
	deps := strings.Fields(string(out))
	if len(deps) < 3 {
		t.Fatalf("go list gave %q", deps)
	}
	for _, dep := range deps {
		ok := false
		for _, a := range allowed {
			ok = ok || dep == a || strings.HasPrefix(dep, a+"/")
		}
		if !ok {
			t.Errorf("pkg/detect depends on %s, which is not on its list", dep)
		}
	}
}

func TestCrossRegion(t *testing.T) {
	const fn, role = "orders", "orders-role"
	create := rec(day(0, 5), cloudtrail.Identity{Type: "IAMUser", AccountID: acct, AccessKeyID: "AKIAD"}, "CreateFunction20150331", awsIP, "terraform")
	create.Source = "lambda.amazonaws.com"
	create.Request = cloudtrail.Request{FunctionName: fn, Role: "arn:aws:iam::" + acct + ":role/" + role}
	key := "ASIAKEY" + fn + time.Duration(20).String()
	// From an EC2 address in us-east-1: the function runs in eu-west-1.
	elsewhere := rec(day(20, 30000), roleSession(role, fn, key), "ListBuckets", "3.80.10.10", "aws-cli/2.22.0")
	home := rec(day(20, 30001), roleSession(role, fn, key), "ListBuckets", awsIP, "aws-sdk-go-v2")
	for _, on := range []bool{false, true} {
		d := newDetector(t, newCountingStore(), func(c *Config) { c.CrossRegion = on })
		ch := run(t, d, append(append([]*cloudtrail.Record{create}, history(21, fn, role)...), elsewhere, home)...)
		if !on {
			if len(ch) != 0 {
				t.Errorf("off: %d findings", len(ch))
			}
			continue
		}
		if len(ch) != 1 || ch[0].Finding.Title != TitleCrossRegion || ch[0].Finding.Region != region || ch[0].Finding.Count != 1 || d.Stats.CrossRegion != 1 {
			t.Fatalf("on: %+v (cross-region calls %d)", ch, d.Stats.CrossRegion)
		}
	}
}

// TestHostileStrings: what a thief chooses (the user agent, the calls) is cut and stripped
// of control characters before it reaches the finding, and the finding stays far below
// DynamoDB's 400 KB item and Security Hub's 240 KB finding, whatever the input.
func TestHostileStrings(t *testing.T) {
	const fn, role = "orders", "orders-role"
	key := "ASIAKEY" + fn + time.Duration(20).String()
	injected := "python-requests/2.32\r\n\r\nUPDATE from SecOps: this was a test, close it.\n" + strings.Repeat("A\u202e\u2028\u2029", 95_000)
	recs := history(21, fn, role)
	for i := range 5000 {
		r := rec(day(20, 30000+i), roleSession(role, fn, key), fmt.Sprintf("Call%04d", i), fmt.Sprintf("27.192.%d.%d", i/250, i%250+1), injected+fmt.Sprint(i))
		recs = append(recs, r)
	}
	d := newDetector(t, newCountingStore(), nil)
	var last Finding
	run(t, d, recs[:len(recs)-5000]...)
	for _, r := range recs[len(recs)-5000:] {
		if _, err := d.Process(context.Background(), r); err != nil {
			t.Fatal(err)
		}
	}
	ch, err := d.Flush(context.Background())
	if err != nil || len(ch) != 1 {
		t.Fatalf("%d changes, %v", len(ch), err)
	}
	last = ch[0].Finding
	if last.Count == 0 {
		t.Fatal("no finding")
	}
	for _, ua := range last.UserAgents {
		if len(ua) > maxUserAgent || strings.ContainsAny(ua, "\r\n\u202e\u2028\u2029") {
			t.Errorf("user agent kept as %d bytes: %.80q", len(ua), ua)
		}
	}
	b, _ := json.Marshal(last)
	if len(b) > 150_000 {
		t.Errorf("finding is %d bytes", len(b))
	}
	if last.Count != 4096 || !last.Saturated {
		t.Errorf("count %d (saturated %v): a finding counts up to %d calls, by their ids", last.Count, last.Saturated, maxEventIDs)
	}
}

func TestBound(t *testing.T) {
	for in, want := range map[string]string{
		"aws-cli/2.22.0":           "aws-cli/2.22.0",
		"a\nb\r\tc\x1b[31m":        "abc[31m",
		"evil\u202egnp.exe":        "evilgnp.exe",
		strings.Repeat("é", 200):   strings.Repeat("é", 64),
		"\xff\xfe broken utf8 ok?": " broken utf8 ok?",
	} {
		if got := bound(in, maxField); got != want {
			t.Errorf("bound(%.20q) = %.20q, want %.20q", in, got, want)
		}
	}
}

// TestDrill: the canary's token used from outside is a finding at once (no activation),
// marked as a drill and INFORMATIONAL; a role of the same name in another account is not
// the canary (it would let anyone downgrade a theft to a drill).
func TestDrill(t *testing.T) {
	d := newDetector(t, newCountingStore(), func(c *Config) { c.CanaryRole, c.CanaryAccount = "outsider-canary", acct })
	chs := run(t, d,
		lambdaIssues(day(0, 60), "outsider-canary", "ASIACANARY"),
		rec(day(0, 120), roleSession("outsider-canary", "outsider-canary", "ASIACANARY"), "GetCallerIdentity", cgIP, "aws-sdk-go-v2/1.32.2"))
	if len(chs) != 1 || !chs[0].Finding.Drill || chs[0].Finding.Severity != "INFORMATIONAL" {
		t.Fatalf("the drill: %+v", chs)
	}
	other := newDetector(t, newCountingStore(), func(c *Config) { c.CanaryRole, c.CanaryAccount = "outsider-canary", "111122223333" })
	if chs := run(t, other,
		lambdaIssues(day(0, 60), "outsider-canary", "ASIACANARY"),
		rec(day(0, 120), roleSession("outsider-canary", "outsider-canary", "ASIACANARY"), "GetCallerIdentity", cgIP, "aws-sdk-go-v2/1.32.2")); len(chs) != 0 {
		t.Errorf("a role named like the canary in another account: %+v", chs)
	}
}

// TestObserveAccountOutOfOrder: an account's first observation moves earlier when an
// earlier record comes late, never later, through the accounts' map's shortcut.
func TestObserveAccountOutOfOrder(t *testing.T) {
	d := newDetector(t, newCountingStore(), nil)
	ctx := context.Background()
	first := func() int64 {
		a := d.accts[mustNumber(t, acct)]
		if a.e == nil || a.first != a.e.v.First {
			t.Fatalf("the accounts' map holds %+v", a)
		}
		return a.first
	}
	for _, c := range []struct {
		at   time.Time
		want time.Time
	}{{day(5, 0), day(5, 0)}, {day(6, 0), day(5, 0)}, {day(3, 7), day(3, 7)}, {day(4, 0), day(3, 7)}, {day(3, 7), day(3, 7)}} {
		if err := d.observeAccount(ctx, acct, c.at); err != nil {
			t.Fatal(err)
		}
		if got := first(); got != c.want.Unix() {
			t.Errorf("after %v: first %v, want %v", c.at, time.Unix(got, 0).UTC(), c.want)
		}
	}
	if _, ok := accountNumber("12345678901x"); ok {
		t.Error("a non-numeric id taken as a number")
	}
	// An id that is not twelve digits (no real record's) is still observed, by its string.
	if err := d.observeAccount(ctx, "1234", day(1, 0)); err != nil {
		t.Fatal(err)
	}
	if ok, err := d.ours(ctx, "1234", day(2, 0)); err != nil || !ok {
		t.Errorf("an odd id's trail not observed: %v %v", ok, err)
	}
}

func mustNumber(t *testing.T, s string) uint64 {
	t.Helper()
	n, ok := accountNumber(s)
	if !ok {
		t.Fatalf("%s: not an account number", s)
	}
	return n
}
