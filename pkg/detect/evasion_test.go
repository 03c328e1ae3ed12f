package detect

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/outsider-sec/outsider/pkg/cloudtrail"
)

// The evasions a thief with a stolen function key would try, each against the same
// 21-day history of one function (orders), and what the detector must still see.

const (
	evFn, evRole = "orders", "orders-role"
	evKey        = "ASIAKEYorders20ns" // Lambda issued it on day 20 at 00:01, used inside at 00:02
	otherAcct    = "999988887777"
)

func findingOf(chs []Change, title Title) (Finding, bool) {
	var f Finding
	ok := false
	for _, c := range chs {
		if c.Finding.Title == title {
			f, ok = c.Finding, true // the last state
		}
	}
	return f, ok
}

func titlesOf(chs []Change) []string {
	var out []string
	for _, c := range chs {
		if !slices.Contains(out, string(c.Finding.Title)) {
			out = append(out, string(c.Finding.Title))
		}
	}
	return out
}

// assumeRole: id obtains key of roleARN, logged in the account recipient.
func assumeRole(at time.Time, id cloudtrail.Identity, roleARN, key, ip, recipient string) *cloudtrail.Record {
	r := rec(at, id, "AssumeRole", ip, "aws-sdk-go-v2/1.32.2 exec-env/AWS_Lambda_go")
	r.Source, r.RecipientAccount = "sts.amazonaws.com", recipient
	r.Request = cloudtrail.Request{RoleARN: roleARN, RoleSessionName: "chain"}
	r.IssuedKeyID, r.IssuedKeyExpires = key, at.Add(time.Hour)
	return r
}

func TestEvasions(t *testing.T) {
	fnSession := roleSession(evRole, evFn, evKey)
	theft := func(sec int, name, ip, ua string) *cloudtrail.Record {
		return rec(day(20, sec), fnSession, name, ip, ua)
	}
	t.Run("the thief's own VPC endpoint is outside", func(t *testing.T) {
		r := theft(3600, "ListBuckets", "10.20.30.40", "python-requests")
		r.VPCEndpointID, r.VPCEndpointAcct = "vpce-0thief", "888877776666" // FOREIGN-ENDPOINT
		ours := theft(3700, "GetObject", "10.1.2.3", "python-requests")
		ours.VPCEndpointID, ours.VPCEndpointAcct = "vpce-0ours", acct // FOREIGN-ENDPOINT
		f, ok := findingOf(run(t, newDetector(t, newCountingStore(), nil), append(history(21, evFn, evRole), r, ours)...), TitleInside)
		if !ok || !slices.Contains(f.Signals, SignalForeignEndpoint) || f.Count != 1 {
			t.Errorf("found %v, signals %q, count %d: want one call, through the foreign endpoint", ok, f.Signals, f.Count)
		}
	})
	t.Run("invokedBy from a public address outside AWS silences nothing", func(t *testing.T) {
		r := theft(3600, "ListBuckets", cgIP, "python-requests")
		r.Identity.InvokedBy = "lambda.amazonaws.com"
		if _, ok := findingOf(run(t, newDetector(t, newCountingStore(), nil), append(history(21, evFn, evRole), r)...), TitleInside); !ok {
			t.Error("no finding")
		}
	})
	t.Run("query-string signing is a pass only for S3 object operations", func(t *testing.T) {
		r := theft(3600, "PutBucketPolicy", cgIP, "python-requests")
		r.Presigned = true
		if _, ok := findingOf(run(t, newDetector(t, newCountingStore(), nil), append(history(21, evFn, evRole), r)...), TitleInside); !ok {
			t.Error("a query-string PutBucketPolicy from outside raised nothing")
		}
	})
	t.Run("presigned uses are listed on a finding of any title of the function", func(t *testing.T) {
		get := theft(3000, "GetObject", "1.128.9.9", "Mozilla/5.0")
		get.Presigned = true
		cli := theft(3600, "ListBuckets", cgIP, "aws-cli/2.22.0")
		f, ok := findingOf(run(t, newDetector(t, newCountingStore(), nil), append(history(21, evFn, evRole), get, cli)...), TitleCLI)
		if !ok || !slices.Contains(f.Signals, SignalPresigned+":GetObject") || f.Count != 1 {
			t.Errorf("found %v, signals %q, count %d: want the CLI finding, listing the presigned GetObject, one call", ok, f.Signals, f.Count)
		}
	})
	t.Run("padding does not hide what comes after", func(t *testing.T) {
		d := newDetector(t, newCountingStore(), nil)
		run(t, d, history(21, evFn, evRole)...)
		ctx := context.Background()
		for i := 0; i < maxEventIDs; i++ {
			if _, err := d.Process(ctx, theft(3600+i%600, "GetCallerIdentity", cgIP, "python-requests")); err != nil {
				t.Fatal(err)
			}
		}
		last := theft(7200, "CreateAccessKey", "36.192.7.9", "python-requests")
		last.Source = "iam.amazonaws.com"
		if _, err := d.Process(ctx, last); err != nil {
			t.Fatal(err)
		}
		chs, err := d.Flush(ctx)
		if err != nil {
			t.Fatal(err)
		}
		f, _ := findingOf(chs, TitleInside)
		if !slices.Contains(f.SourceIPs(), "36.192.7.9") || !slices.Contains(f.CallNames(), "iam:CreateAccessKey") || !f.Saturated {
			t.Errorf("after %d calls: sources %q, calls %q, saturated %v: want the new address and CreateAccessKey, count a lower bound", maxEventIDs, f.SourceIPs(), f.CallNames(), f.Saturated)
		}
	})
	t.Run("AWS Internal does not make a key seen inside", func(t *testing.T) {
		const key = "ASIAFRESHKEYNOTUSED1"
		internal := rec(day(20, 1000), roleSession(evRole, evFn, key), "Decrypt", "AWS Internal", "AWS Internal")
		out := rec(day(20, 3600), roleSession(evRole, evFn, key), "ListBuckets", cgIP, "python-requests")
		chs := run(t, newDetector(t, newCountingStore(), nil), append(history(21, evFn, evRole), lambdaIssues(day(20, 900), evRole, key), internal, out)...)
		if got := titlesOf(chs); !slices.Equal(got, []string{string(TitleRemote)}) {
			t.Errorf("titles %q, want only %q", got, TitleRemote)
		}
	})
	t.Run("a person's session of a Lambda role passes no person on", func(t *testing.T) {
		user := cloudtrail.Identity{Type: "IAMUser", ARN: "arn:aws:iam::" + acct + ":user/dev", AccountID: acct, AccessKeyID: "AKIADEV"}
		const kp, ko = "ASIAPERSONLAMBDAROLE", "ASIAPERSONSECONDROLE"
		recs := append(history(21, evFn, evRole),
			assumeRole(day(19, 100), user, "arn:aws:iam::"+acct+":role/"+evRole, kp, awsIP, acct),
			assumeRole(day(19, 200), roleSession(evRole, "dev", kp), "arn:aws:iam::"+acct+":role/reader", ko, awsIP, acct),
			rec(day(19, 300), roleSession("reader", "chain", ko), "ListBuckets", cgIP, "Boto3/1.34"), // from home, AS4837
			theft(100, "ListBuckets", cgIP, "python-requests"),                                       // before the key's use inside
		)
		if got := titlesOf(run(t, newDetector(t, newCountingStore(), nil), recs...)); slices.Contains(got, string(TitleKnownASN)) {
			t.Errorf("titles %q: the home network became known through a Lambda role's session", got)
		}
	})
	t.Run("a chained key used by the function inside is seen inside", func(t *testing.T) {
		const kc = "ASIACHAINEDKEYREADER"
		recs := append(history(21, evFn, evRole),
			assumeRole(day(20, 200), fnSession, "arn:aws:iam::"+acct+":role/reader", kc, awsIP, acct),
			rec(day(20, 300), roleSession("reader", "chain", kc), "GetObject", awsIP, "aws-sdk-go-v2/1.32.2 exec-env/AWS_Lambda_go"),
			rec(day(20, 400), roleSession("reader", "chain", kc), "ListBuckets", cgIP, "python-requests"),
		)
		f, ok := findingOf(run(t, newDetector(t, newCountingStore(), nil), recs...), TitleInside)
		if !ok || f.Function != evFn || !strings.HasSuffix(f.ChainedRoleARN, ":role/reader") {
			t.Errorf("found %v: %+v; want %q on %s naming the chained role", ok, f, TitleInside, evFn)
		}
	})
	t.Run("a cross-account AssumeRole's two copies merge in either order", func(t *testing.T) {
		const kx = "ASIACROSSACCOUNTKEY1"
		target := "arn:aws:iam::" + otherAcct + ":role/deploy-target"
		callerCopy := assumeRole(day(20, 200), fnSession, target, kx, awsIP, acct)
		ownerCopy := assumeRole(day(20, 200), cloudtrail.Identity{Type: "AWSAccount", AccountID: acct, PrincipalID: "AROAEXAMPLE:orders"}, target, kx, awsIP, otherAcct)
		use := rec(day(20, 400), cloudtrail.Identity{
			Type: "AssumedRole", ARN: "arn:aws:sts::" + otherAcct + ":assumed-role/deploy-target/chain", AccountID: otherAcct, AccessKeyID: kx,
			IssuerARN: target, IssuerAccount: otherAcct, IssuerName: "deploy-target",
		}, "ListBuckets", cgIP, "python-requests")
		use.RecipientAccount = otherAcct
		for name, order := range map[string][]*cloudtrail.Record{"caller's first": {callerCopy, ownerCopy}, "owner's first": {ownerCopy, callerCopy}} {
			recs := append(history(21, evFn, evRole), append(order, use)...)
			f, ok := findingOf(run(t, newDetector(t, newCountingStore(), nil), recs...), TitleRemote)
			if !ok || f.Function != evFn || f.Account != acct || f.ChainedRoleARN != target {
				t.Errorf("%s: found %v: %+v; want a finding on %s naming %s", name, ok, f, evFn, target)
			}
		}
	})
	t.Run("a call is identified by its account and eventID", func(t *testing.T) {
		a := theft(3600, "ListBuckets", cgIP, "python-requests")
		b := theft(3700, "ListBuckets", cgIP, "python-requests")
		b.EventID = a.EventID
		b.Identity.AccessKeyID = "ASIAKEYorders19ns" // the day before's key, another account's eventID space
		b.RecipientAccount = otherAcct
		f, _ := findingOf(run(t, newDetector(t, newCountingStore(), nil), append(history(21, evFn, evRole), a, b)...), TitleInside)
		if f.Count != 2 {
			t.Errorf("count %d, want 2: a record of another account with the same eventID is another call", f.Count)
		}
	})
	t.Run("two workers deciding the halves of one theft in any order write one finding", func(t *testing.T) {
		st := newCountingStore()
		run(t, newDetector(t, st, nil), history(21, evFn, evRole)...)
		early := []*cloudtrail.Record{theft(3600, "GetCallerIdentity", cgIP, "aws-cli/2"), theft(3680, "ListBuckets", cgIP, "aws-cli/2")}
		late := theft(3760, "ListRoles", cgIP, "aws-cli/2")
		ids := map[string]int{}
		for _, c := range run(t, newDetector(t, st, nil), late) {
			ids[c.Finding.ID] = c.Finding.Count
		}
		for _, c := range run(t, newDetector(t, st, nil), early...) {
			ids[c.Finding.ID] = c.Finding.Count
		}
		if len(ids) != 1 {
			t.Errorf("findings %v, want one", ids)
		}
		for _, n := range ids {
			if n != 3 {
				t.Errorf("count %d, want 3", n)
			}
		}
	})
}

func TestGloballyReachable(t *testing.T) {
	for ip, want := range map[string]bool{
		"2001:0:4136:e378:8000:63bf:3fff:fdd2": true,  // Teredo: N/A, the internet's
		"2001:3::1":                            true,  // AMT, globally reachable inside 2001::/23
		"2002:c000:204::1":                     true,  // 6to4
		"192.0.0.9":                            true,  // PCP anycast
		"2001:2::1":                            false, // benchmarking
		"2001:db8::1":                          false, // documentation
		"2001:10::1":                           false, // deprecated ORCHID, inside 2001::/23
		"192.0.0.1":                            false,
		"100.64.0.1":                           false,
		"64:ff9b::1.2.3.4":                     true, // NAT64's well-known prefix: globally reachable
	} {
		if got := Public(cloudtrail.ParseAddr(ip)); got != want {
			t.Errorf("Public(%s) = %v, want %v", ip, got, want)
		}
	}
}
