package cloudtrail

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"encoding/json"
	"fmt"
	"iter"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// readAll parses b and returns the records and the reasons of what was skipped.
func readAll(t testing.TB, b []byte) ([]*Record, []string) {
	t.Helper()
	var recs []*Record
	var bad []string
	if err := Read(bytes.NewReader(b), func(r *Record) { recs = append(recs, r) }, func(err error) { bad = append(bad, Reason(err)) }); err != nil {
		t.Fatalf("Read: %v", err)
	}
	return recs, bad
}

const lambdaAssumeRole = `{"eventVersion":"1.08","userIdentity":{"type":"AWSService","invokedBy":"lambda.amazonaws.com"},"eventTime":"2023-07-10T12:26:02Z","eventSource":"sts.amazonaws.com","eventName":"AssumeRole","awsRegion":"us-east-1","sourceIPAddress":"lambda.amazonaws.com","userAgent":"lambda.amazonaws.com","requestParameters":{"roleArn":"arn:aws:iam::218007301253:role/stratus-lambda","roleSessionName":"awslambda_497_20230710122602137"},"responseElements":{"credentials":{"accessKeyId":"ASIATFQR7NSCXAMPLE01","sessionToken":"IQoJb3JpZ2luX2VjSECRETSECRETSECRET","secretAccessKey":"wJalrXUtnFEMI/K7MDENG/bPxRfiCYSECRETKEY","expiration":"Jul 11, 2023, 12:26:02 AM"}},"requestID":"r1","eventID":"e1","readOnly":true,"eventType":"AwsApiCall","managementEvent":true,"recipientAccountId":"218007301253"}`

func TestParseShapes(t *testing.T) {
	rec := `{"eventTime":"2024-06-02T20:27:12Z","eventSource":"s3.amazonaws.com","eventName":"ListBuckets","sourceIPAddress":"::ffff:1.128.9.9","userIdentity":{"type":"AssumedRole","arn":"arn:aws:sts::210987654321:assumed-role/r/fn","accessKeyId":"ASIAEXAMPLE","sessionContext":{"sessionIssuer":{"type":"Role","arn":"arn:aws:iam::210987654321:role/svc/r","accountId":"210987654321","userName":"r"}}},"recipientAccountId":"210987654321"}`
	env := `{"version":"0","id":"x","detail-type":"AWS API Call via CloudTrail","source":"aws.s3","account":"210987654321","detail":` + rec + `}`
	forged := strings.Replace(env, `"aws.s3"`, `"custom.attacker"`, 1)
	otherAccount := strings.Replace(env, `"account":"210987654321"`, `"account":"123456789012"`, 1)
	tests := []struct {
		name    string
		in      string
		records int
		bad     []string
	}{
		{"one record", rec, 1, nil},
		{"envelope", env, 1, nil},
		{"log file", `{"Records":[` + rec + `,` + rec + `]}`, 2, nil},
		{"pretty log file", "{\n \"Records\": [\n" + rec + "\n ]\n}\n", 1, nil},
		{"array of envelopes", `[` + env + `,` + env + `]`, 2, nil},
		{"ndjson of records and envelopes", rec + "\n" + env + "\n\n" + rec + "\n", 3, nil},
		{"ndjson with a bad line", rec + "\n{not json\n" + rec + "\n", 2, []string{ReasonNotJSON}},
		{"ndjson with a bad first line", "{not json\n" + rec + "\n" + rec + "\n", 2, []string{ReasonNotJSON}},
		{"truncated pretty document", "{\n \"Records\": [\n" + rec + ",\n", 1, []string{ReasonNotJSON}},
		{"byte order mark", "\ufeff" + rec + "\n" + rec + "\n", 2, nil},
		{"garbage first line", "garbage here\n" + rec + "\n" + rec + "\n", 2, []string{ReasonNotJSON}},
		{"truncated first record", rec[:120] + "\n" + rec + "\n" + rec + "\n", 2, []string{ReasonNotJSON}},
		{"truncated first record of a log file", "{\"Records\":[" + rec[:120] + "\n" + rec + "\n", 1, []string{ReasonNotJSON}},
		{"other event type", `{"detail-type":"EC2 Instance State-change Notification","detail":{}}`, 0, []string{ReasonNotAPICall}},
		{"not json", "MIT License\n\nCopyright", 0, []string{ReasonNotJSON}},
		{"a number", "42", 0, []string{ReasonNotRecord}},
		{"no event time", `{"eventSource":"s3.amazonaws.com","eventName":"X"}`, 0, []string{ReasonNoEventTime}},
		{"bad event time", `{"eventSource":"s3.amazonaws.com","eventName":"X","eventTime":"redacted"}`, 0, []string{ReasonBadEventTime}},
		{"not a record", `{"hello":"world"}`, 0, []string{ReasonNotRecord}},
		{"userIdentity not an object", `{"eventSource":"s","eventName":"X","eventTime":"2024-06-02T20:27:12Z","userIdentity":"root"}`, 0, []string{ReasonBadShape}},
		{"odd types are ignored", `{"eventSource":"s","eventName":"X","eventTime":"2024-06-02T20:27:12Z","sourceIPAddress":7,"requestParameters":"x","responseElements":[1],"readOnly":"true"}`, 1, nil},
		{"empty", "", 0, nil},
		{"nested too deep", `{"Records":[{"Records":[{"Records":[{"Records":[` + rec + `]}]}]}]}`, 0, []string{ReasonBadShape}},
		{"array of log files", `[{"Records":[` + rec + `]}]`, 1, nil},
		{"envelope from a source not AWS's", forged, 0, []string{ReasonForged}},
		{"envelope of another account than the record's", otherAccount, 0, []string{ReasonForged}},
		{"record dated before CloudTrail", strings.Replace(rec, "2024-06-02", "2000-01-01", 1), 0, []string{ReasonOutOfRange}},
		{"record dated in the future", strings.Replace(rec, "2024-06-02", "9999-12-31", 1), 0, []string{ReasonOutOfRange}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			recs, bad := readAll(t, []byte(tc.in))
			if len(recs) != tc.records {
				t.Errorf("records = %d, want %d", len(recs), tc.records)
			}
			if diff := cmp.Diff(tc.bad, bad); diff != "" {
				t.Errorf("skipped (-want +got):\n%s", diff)
			}
		})
	}
}

// TestParseEnvelope: the Lambda reads one EventBridge envelope around one record, and takes
// every other shape, however valid the records in it, as forged.
func TestParseEnvelope(t *testing.T) {
	rec := `{"eventTime":"2024-06-02T20:27:12Z","eventSource":"s3.amazonaws.com","eventName":"ListBuckets","recipientAccountId":"210987654321"}`
	env := `{"version":"0","detail-type":"AWS API Call via CloudTrail","source":"aws.s3","account":"210987654321","detail":` + rec + `}`
	tests := []struct {
		name    string
		in      string
		records int
		bad     []string
	}{
		{"envelope", env, 1, nil},
		{"envelope, odd types in its record", strings.Replace(env, `"eventName"`, `"sourceIPAddress":7,"eventName"`, 1), 1, nil},
		{"bare record", rec, 0, []string{ReasonForged}},
		{"array of records", `[` + rec + `]`, 0, []string{ReasonForged}},
		{"array of envelopes", `[` + env + `]`, 0, []string{ReasonForged}},
		{"log file", `{"Records":[` + rec + `]}`, 0, []string{ReasonForged}},
		{"envelope around a log file", strings.Replace(env, rec, `{"Records":[`+rec+`,`+rec+`]}`, 1), 0, []string{ReasonForged}},
		{"envelope around an array", strings.Replace(env, rec, `[`+rec+`]`, 1), 0, []string{ReasonForged}},
		{"envelope around an envelope", strings.Replace(env, rec, env, 1), 0, []string{ReasonForged}},
		{"envelope and log file at once", strings.Replace(env, `"detail":`, `"Records":[`+rec+`],"detail":`, 1), 0, []string{ReasonForged}},
		{"a number", `42`, 0, []string{ReasonForged}},
		{"not json", `{x`, 0, []string{ReasonNotJSON}},
		{"other event type", `{"detail-type":"EC2 Instance State-change Notification","source":"aws.ec2","detail":{}}`, 0, []string{ReasonNotAPICall}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var n int
			var bad []string
			ParseEnvelope([]byte(tc.in), func(*Record) { n++ }, func(err error) { bad = append(bad, Reason(err)) })
			if n != tc.records {
				t.Errorf("records = %d, want %d", n, tc.records)
			}
			if diff := cmp.Diff(tc.bad, bad); diff != "" {
				t.Errorf("skipped (-want +got):\n%s", diff)
			}
		})
	}
}

func TestParseFields(t *testing.T) {
	recs, bad := readAll(t, []byte(lambdaAssumeRole))
	if len(recs) != 1 || len(bad) != 0 {
		t.Fatalf("got %d records, %v skipped", len(recs), bad)
	}
	got := recs[0]
	want := &Record{
		EventID: "e1", Time: time.Date(2023, 7, 10, 12, 26, 2, 0, time.UTC), Source: "sts.amazonaws.com", Name: "AssumeRole",
		Region: "us-east-1", SourceIP: "lambda.amazonaws.com", UserAgent: "lambda.amazonaws.com", RecipientAccount: "218007301253",
		Identity:    Identity{Type: "AWSService", InvokedBy: "lambda.amazonaws.com"},
		Request:     Request{RoleARN: "arn:aws:iam::218007301253:role/stratus-lambda", RoleSessionName: "awslambda_497_20230710122602137"},
		IssuedKeyID: "ASIATFQR7NSCXAMPLE01", IssuedKeyExpires: time.Date(2023, 7, 11, 0, 26, 2, 0, time.UTC),
	}
	if diff := cmp.Diff(want, got, cmp.Comparer(func(a, b netip.Addr) bool { return a == b })); diff != "" {
		t.Errorf("record (-want +got):\n%s", diff)
	}
}

// TestOddResponseShapes: responseElements objects that are something else where a record
// has one (Lambda's CreateFunction puts the role's ARN where IAM's CreateRole puts an
// object; forwarders write nulls, numbers, arrays) fail the fast decode and are read by
// the tolerant one: the record keeps every other field, alone or among others in a log
// file, and the secrets stay out.
func TestOddResponseShapes(t *testing.T) {
	base := strings.Replace(lambdaAssumeRole, `"responseElements":{"credentials":{`, `"responseElements":{"role":ROLE,"credentials":{`, 1)
	for _, c := range []struct {
		name, role, creds string
		wantKey, wantRole string
	}{
		{"role an ARN", `"arn:aws:iam::218007301253:role/x"`, "", "ASIATFQR7NSCXAMPLE01", ""},
		{"role an object", `{"arn":"arn:aws:iam::218007301253:role/x"}`, "", "ASIATFQR7NSCXAMPLE01", "arn:aws:iam::218007301253:role/x"},
		{"role null", `null`, "", "ASIATFQR7NSCXAMPLE01", ""},
		{"role a number", `5`, "", "ASIATFQR7NSCXAMPLE01", ""},
		{"credentials a string", `null`, `"SECRETSECRET"`, "", ""},
		{"credentials an array", `[1]`, `["SECRETSECRET"]`, "", ""},
		{"credentials null", `null`, `null`, "", ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			line := strings.Replace(base, "ROLE", c.role, 1)
			if c.creds != "" {
				i := strings.Index(line, `"credentials":{`)
				j := strings.Index(line[i:], "}") + i + 1
				line = line[:i] + `"credentials":` + c.creds + line[j:]
			}
			other := strings.Replace(lambdaAssumeRole, `"eventID":"e1"`, `"eventID":"e2"`, 1)
			for _, input := range []string{line, `{"Records":[` + other + "," + line + "," + other + `]}`} {
				recs, bad := readAll(t, []byte(input))
				if len(bad) != 0 {
					t.Fatalf("skipped %v", bad)
				}
				var r *Record
				for _, x := range recs {
					if x.EventID == "e1" {
						r = x
					}
				}
				if r == nil || len(recs) != strings.Count(input, `"eventID"`) {
					t.Fatalf("got %d records, e1 among them: %v", len(recs), r != nil)
				}
				if r.IssuedKeyID != c.wantKey || r.ResponseRoleARN != c.wantRole {
					t.Errorf("issued key %q, response role %q; want %q, %q", r.IssuedKeyID, r.ResponseRoleARN, c.wantKey, c.wantRole)
				}
				if r.Request.RoleARN != "arn:aws:iam::218007301253:role/stratus-lambda" || r.RecipientAccount != "218007301253" || r.Name != "AssumeRole" {
					t.Errorf("other fields lost: %+v", *r)
				}
				if s := fmt.Sprintf("%#v", *r); strings.Contains(s, "SECRET") {
					t.Errorf("record keeps a secret: %s", s)
				}
			}
		})
	}
}

// TestSecretsNeverKept: the sessionToken and secret key of an AssumeRole response reach
// no field of the record, whatever way it is printed.
func TestSecretsNeverKept(t *testing.T) {
	recs, _ := readAll(t, []byte(lambdaAssumeRole))
	for _, r := range recs {
		js, _ := json.Marshal(r)
		for _, s := range []string{fmt.Sprintf("%+v", *r), fmt.Sprintf("%#v", *r), string(js)} {
			for _, secret := range []string{"SECRETSECRET", "IQoJb3JpZ2luX2Vj", "SECRETKEY"} {
				if strings.Contains(s, secret) {
					t.Errorf("record keeps a secret (%s): %s", secret, s)
				}
			}
		}
	}
}

func TestEventTimes(t *testing.T) {
	want := time.Date(2024, 6, 2, 20, 27, 12, 0, time.UTC)
	for _, s := range []string{"2024-06-02T20:27:12Z", "2024-06-02 20:27:12", "2024-06-02T20:27:12.000Z", "2024-06-02T22:27:12+02:00", "2024-06-02 20:27:12.000000000"} {
		got, err := ParseTime(s)
		if err != nil || !got.Equal(want) {
			t.Errorf("ParseTime(%q) = %v, %v; want %v", s, got, err, want)
		}
	}
	// @timestamp stands in for a missing eventTime.
	recs, _ := readAll(t, []byte(`{"eventSource":"s","eventName":"X","@timestamp":"2024-06-02T20:27:12.000Z"}`))
	if len(recs) != 1 || !recs[0].Time.Equal(want) {
		t.Errorf("@timestamp: got %v", recs)
	}
}

func TestParseAddr(t *testing.T) {
	tests := map[string]string{
		"1.128.9.9":            "1.128.9.9",
		"::ffff:1.128.9.9":     "1.128.9.9",
		"2003:db8:aa::5":       "2003:db8:aa::5",
		"fe80::1%eth0":         "fe80::1",
		"253.252.51.07":        "invalid IP", // scrambled: a leading zero is ambiguous
		"lambda.amazonaws.com": "invalid IP",
		"AWS Internal":         "invalid IP",
		"<Attacker source IP>": "invalid IP",
		"":                     "invalid IP",
	}
	for in, want := range tests {
		if got := ParseAddr(in).String(); got != want {
			t.Errorf("ParseAddr(%q) = %s, want %s", in, got, want)
		}
	}
}

func TestIdentity(t *testing.T) {
	id := Identity{ARN: "arn:aws:sts::210987654321:assumed-role/invoice-pdf-exec/invoice-pdf", PrincipalID: "AROA1:invoice-pdf", AccessKeyID: "ASIAX"}
	if got := id.SessionName(); got != "invoice-pdf" {
		t.Errorf("SessionName = %q", got)
	}
	if got := id.RoleName(); got != "invoice-pdf-exec" {
		t.Errorf("RoleName = %q", got)
	}
	if got := id.Account(); got != "210987654321" {
		t.Errorf("Account = %q", got)
	}
	if !id.Temporary() {
		t.Error("ASIA key not temporary")
	}
}

// TestDatasets reads every real record we carry: every record parses or is skipped with a
// reason, and no copied sessionToken survives.
func TestDatasets(t *testing.T) {
	files, _ := filepath.Glob("testdata/datasets/*.ndjson.gz")
	if len(files) == 0 {
		t.Fatal("no datasets")
	}
	want := map[string][2]int{ // records, skipped
		"invictus-aws_dataset": {2900, 0}, "otrf-security-datasets": {103, 0}, "panther-analysis": {444, 20},
		"stratus-red-team": {310, 0}, "trailscraper": {2, 0}, "zmallen-cloudtrail2sightings": {12, 0},
	}
	for _, f := range files {
		name := strings.TrimSuffix(filepath.Base(f), ".ndjson.gz")
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		recs, bad := readAll(t, b)
		if got := [2]int{len(recs), len(bad)}; got != want[name] {
			t.Errorf("%s: (records, skipped) = %v, want %v (skipped: %v)", name, got, want[name], bad)
		}
		for _, r := range recs {
			if strings.Contains(fmt.Sprintf("%+v", *r), "IQoJb3JpZ2lu") {
				t.Fatalf("%s: a session token reached a record", name)
			}
		}
	}
}

func TestS3LogFileGzipAndNotJSON(t *testing.T) {
	b, _ := os.ReadFile("testdata/s3-log-file.json.gz")
	recs, bad := readAll(t, b)
	if len(recs) != 2 || len(bad) != 0 {
		t.Errorf("gz log file: %d records, %v", len(recs), bad)
	}
	b, _ = os.ReadFile("testdata/not-json.json")
	recs, bad = readAll(t, b)
	if len(recs) != 0 || len(bad) != 1 || bad[0] != ReasonNotJSON {
		t.Errorf("not-json file: %d records, %v", len(recs), bad)
	}
	// A damaged gzip is an error that names it, not a panic.
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	zw.Write([]byte(lambdaAssumeRole))
	zw.Close()
	err := Read(bytes.NewReader(buf.Bytes()[:buf.Len()-6]), func(*Record) {}, func(error) {})
	if err == nil || !strings.Contains(err.Error(), "gzip") {
		t.Errorf("truncated gzip: err = %v", err)
	}
}

// seeds returns every record line of the datasets: the fuzz seed corpus.
func seeds(t testing.TB) [][]byte {
	files, _ := filepath.Glob("testdata/datasets/*.ndjson.gz")
	var out [][]byte
	for _, f := range files {
		fh, err := os.Open(f)
		if err != nil {
			t.Fatal(err)
		}
		zr, err := gzip.NewReader(fh)
		if err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(zr)
		sc.Buffer(nil, 1<<20)
		for sc.Scan() {
			out = append(out, append([]byte(nil), sc.Bytes()...))
		}
		fh.Close()
	}
	return out
}

// FuzzRead: no input panics the parser, and whatever it returns is consistent.
func FuzzRead(f *testing.F) {
	for _, s := range seeds(f) {
		f.Add(s)
	}
	f.Add([]byte(lambdaAssumeRole))
	f.Fuzz(func(t *testing.T, b []byte) {
		_ = Read(bytes.NewReader(b), func(r *Record) {
			if r.Time.IsZero() || r.Name == "" || r.Source == "" {
				t.Fatalf("record without time, name or source: %+v", r)
			}
			if r.Addr.IsValid() && r.Addr.Is4In6() {
				t.Fatalf("mapped address kept: %v", r.Addr)
			}
		}, func(err error) {
			if Reason(err) == "error" {
				t.Fatalf("skip without a reason: %v", err)
			}
		})
	})
}

func BenchmarkRead(b *testing.B) {
	lines := seeds(b)
	var buf bytes.Buffer
	for _, l := range lines {
		buf.Write(l)
		buf.WriteByte('\n')
	}
	data := buf.Bytes()
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		_ = Read(bytes.NewReader(data), func(*Record) {}, func(error) {})
	}
	b.ReportMetric(float64(len(lines))*float64(b.N)/b.Elapsed().Seconds(), "records/s")
}

// TestRecordsOwnTheirStrings: every real record we carry, parsed from bytes that are then
// overwritten (as the reader reuses its line buffer), keeps exactly the fields a parse of
// untouched bytes gives.
func TestRecordsOwnTheirStrings(t *testing.T) {
	for _, line := range seeds(t) {
		var want []*Record
		ParseValue(bytes.Clone(line), func(r *Record) { want = append(want, r) }, func(error) {})
		scratch := bytes.Clone(line)
		var got []*Record
		ParseValue(scratch, func(r *Record) { got = append(got, r) }, func(error) {})
		for i := range scratch {
			scratch[i] = 'X'
		}
		if diff := cmp.Diff(want, got, cmp.Comparer(func(a, b netip.Addr) bool { return a == b })); diff != "" {
			t.Fatalf("a record changed with the bytes it was parsed from (-want +got):\n%s", diff)
		}
	}
}

// TestReadNSameAsRead: parsing on several goroutines gives what Read gives, in the same
// order: every real record we carry, repeated past many blocks, with junk, too-long and
// cut lines among them.
func TestReadNSameAsRead(t *testing.T) {
	var buf bytes.Buffer
	lines := seeds(t)
	for i := 0; buf.Len() < 8*blockBytes+12345; i++ {
		buf.Write(lines[i%len(lines)])
		buf.WriteByte('\n')
		switch i % 97 {
		case 5:
			buf.WriteString("not json at all\n")
		case 11:
			buf.WriteString(`{"eventName":"Cut","eventSource":"s3.amazonaws.com","eventTime":"2024-01-0` + "\n")
		case 17:
			buf.WriteString("\n   \n")
		}
	}
	type ev struct {
		rec    *Record
		reason string
	}
	read := func(workers int) []ev {
		var out []ev
		err := ReadN(bytes.NewReader(buf.Bytes()), workers, func(r *Record) { out = append(out, ev{rec: r}) },
			func(err error) { out = append(out, ev{reason: Reason(err)}) })
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	want := read(1)
	if len(want) < 1000 {
		t.Fatalf("only %d values read", len(want))
	}
	// The slow, obvious reference: each line on its own, records allocated one by one.
	var ref []ev
	for _, l := range bytes.Split(buf.Bytes(), []byte("\n")) {
		ParseValue(bytes.Clone(l), func(r *Record) { ref = append(ref, ev{rec: r}) }, func(err error) { ref = append(ref, ev{reason: Reason(err)}) })
	}
	if diff := cmp.Diff(ref, want, cmp.AllowUnexported(ev{}), cmp.Comparer(func(a, b netip.Addr) bool { return a == b })); diff != "" {
		t.Fatalf("Read and ParseValue line by line differ (-ParseValue +Read):\n%s", diff)
	}
	for _, workers := range []int{2, 3, 8} {
		got := read(workers)
		if diff := cmp.Diff(want, got, cmp.AllowUnexported(ev{}), cmp.Comparer(func(a, b netip.Addr) bool { return a == b })); diff != "" {
			t.Fatalf("%d workers (-Read +ReadN):\n%s", workers, diff)
		}
	}
}

// TestParseZulu: the fast path for CloudTrail's own form agrees with time.Parse, and leaves
// everything else to it.
func TestParseZulu(t *testing.T) {
	for _, s := range []string{
		"2026-05-20T14:00:00Z", "2024-02-29T23:59:59Z", "2023-02-29T00:00:00Z", "2026-13-01T00:00:00Z",
		"2026-04-31T00:00:00Z", "2026-05-20T24:00:00Z", "2026-05-20T14:60:00Z", "2026-05-2xT14:00:00Z",
		"2026-05-20T14:00:00.123Z", "2026-05-20 14:00:00", "0000-01-01T00:00:00Z", "2026-00-10T00:00:00Z",
	} {
		want, werr := time.Parse(time.RFC3339, s)
		got, ok := parseZulu(s)
		if ok && (werr != nil || !got.Equal(want)) {
			t.Errorf("parseZulu(%q) = %v, time.Parse = %v, %v", s, got, want, werr)
		}
		if !ok && werr == nil && len(s) == 20 {
			t.Errorf("parseZulu(%q) refused what time.Parse reads", s)
		}
	}
}

// TestNoStaleFields: log files are decoded into reused space; a record never carries a
// field of a record decoded before it.
func TestNoStaleFields(t *testing.T) {
	full := `{"eventName":"AssumeRole","eventSource":"sts.amazonaws.com","eventTime":"2026-05-01T00:00:00Z","errorCode":"AccessDenied",` +
		`"userIdentity":{"type":"AssumedRole","arn":"arn:aws:sts::111122223333:assumed-role/r/s","sessionContext":{"sessionIssuer":{"userName":"r"}}},` +
		`"requestParameters":{"roleArn":"arn:aws:iam::111122223333:role/x"},"responseElements":{"credentials":{"accessKeyId":"ASIAFULL"}},` +
		`"additionalEventData":{"AuthenticationMethod":"QueryString"},"recipientAccountId":"111122223333"}`
	bare := `{"eventName":"GetObject","eventSource":"s3.amazonaws.com","eventTime":"2026-05-01T00:00:01Z"}`
	for i := 0; i < 50; i++ {
		var recs []*Record
		for _, doc := range []string{`{"Records":[` + full + `,` + full + `,` + full + `]}`, `{"Records":[` + bare + `,` + bare + `]}`} {
			if err := Read(strings.NewReader(doc), func(r *Record) { recs = append(recs, r) }, func(err error) { t.Fatal(err) }); err != nil {
				t.Fatal(err)
			}
		}
		for _, r := range recs[3:] {
			if r.ErrorCode != "" || r.Identity != (Identity{}) || r.Request != (Request{}) || r.IssuedKeyID != "" || r.Presigned || r.RecipientAccount != "" {
				t.Fatalf("a bare record carries fields of an earlier one: %+v", *r)
			}
		}
	}
}

// TestRecycle: records given back are handed out again, zeroed.
func TestRecycle(t *testing.T) {
	if raceDetector {
		t.Skip("under the race detector, sync.Pool drops a quarter of what is put in it")
	}
	// One P: what this goroutine puts in the pool is what it gets back.
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	var a arena
	r := a.record()
	r.EventID, r.Name = "ev-1", "GetObject"
	Recycle([]*Record{r, nil})
	if *r != (Record{}) {
		// Waiting in the pool, its strings would keep their arena chunk alive.
		t.Errorf("a record given back still holds %+v, want it zeroed", *r)
	}
	got := a.record()
	if got != r {
		t.Fatal("a recycled record was not handed out again")
	}
	if *got != (Record{}) {
		t.Errorf("a recycled record is handed out as %+v, want it zeroed", *got)
	}
	if again := a.record(); again == r {
		t.Error("a record given back once was handed out twice")
	}
}

// TestSharedArena: inputs read in turn by coroutines of one goroutine, sharing one arena
// (a replay of a file per account), give the records each gives read alone with its own,
// and none changes as the others are read after it.
func TestSharedArena(t *testing.T) {
	files, _ := filepath.Glob("testdata/datasets/*.ndjson.gz")
	if len(files) < 3 {
		t.Fatal("no datasets")
	}
	read := func(f string, opt ReadOptions, emit func(*Record)) {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if err := ReadWith(bytes.NewReader(b), opt, emit, func(error) {}); err != nil {
			t.Fatal(err)
		}
	}
	arena := NewArena()
	pulls := make([]func() (*Record, bool), len(files))
	for i, f := range files {
		next, stop := iter.Pull(func(yield func(*Record) bool) {
			read(f, ReadOptions{Small: true, Arena: arena}, func(r *Record) { yield(r) })
		})
		defer stop()
		pulls[i] = next
	}
	// A record at a time from each input in turn: each input's parse is cut off by every
	// other's, as hundreds of streams merged by time are.
	got := make([][]*Record, len(files))
	for open := len(files); open > 0; {
		open = 0
		for i, next := range pulls {
			if r, ok := next(); ok {
				got[i] = append(got[i], r)
				open++
			}
		}
	}
	total := 0
	for i, f := range files {
		var want []*Record
		read(f, ReadOptions{Small: true}, func(r *Record) { want = append(want, r) })
		total += len(want)
		if diff := cmp.Diff(want, got[i], cmp.Comparer(func(a, b netip.Addr) bool { return a == b })); diff != "" {
			t.Fatalf("%s read beside the others in one arena (-alone +shared):\n%s", f, diff)
		}
	}
	if total < 3000 {
		t.Fatalf("only %d records", total)
	}
}

// TestEventTime: the hint reads the first eventTime key written as CloudTrail writes it,
// and nothing else.
func TestEventTime(t *testing.T) {
	at := time.Date(2026, 3, 1, 12, 30, 5, 0, time.UTC)
	for _, c := range []struct {
		line string
		want time.Time
	}{
		{`{"eventVersion":"1.08","eventTime":"2026-03-01T12:30:05Z","eventName":"X"}`, at},
		{`{"version":"0","time":"2026-03-02T00:00:00Z","detail":{"eventTime":"2026-03-01T12:30:05Z"}}`, at},
		{`{"eventTime": "2026-03-01T12:30:05Z"}`, time.Time{}},                                // a space: not CloudTrail's writing
		{`{"eventTime":"2026-03-01T12:30:05.123Z"}`, time.Time{}},                             // fractional seconds
		{`{"eventTime":"2026-02-30T12:30:05Z"}`, time.Time{}},                                 // no such day
		{`{"eventTime":"2026-03-01T12:30:05Z`, time.Time{}},                                   // cut off
		{`{"@timestamp":"2026-03-01T12:30:05Z"}`, time.Time{}},                                // no eventTime
		{`{"eventTime":"2026-03-01 12:30:05"}`, time.Time{}},                                  // another layout
		{`{"a":{"eventTime":"2026-03-01T12:30:05Z"},"eventTime":"2020-01-01T00:00:00Z"}`, at}, // the first: a hint
	} {
		got, ok := EventTime([]byte(c.line))
		if ok != !c.want.IsZero() || !got.Equal(c.want) {
			t.Errorf("%s: %v %v, want %v", c.line, got, ok, c.want)
		}
	}
}

// TestLookupEvents: what `aws cloudtrail lookup-events` prints (pretty, newest first, each
// record a JSON string) gives its records, in event-time order; an event without its
// record, or whose record is not one, is counted.
func TestLookupEvents(t *testing.T) {
	rec := func(id, at string) string {
		return fmt.Sprintf(`{"eventVersion":"1.08","userIdentity":{"type":"AssumedRole","accessKeyId":"ASIAEXAMPLE","sessionContext":{"sessionIssuer":{"arn":"arn:aws:iam::111122223333:role/r"}}},"eventTime":"%s","eventSource":"s3.amazonaws.com","eventName":"ListBuckets","awsRegion":"eu-west-1","sourceIPAddress":"198.51.100.7","eventID":"%s","recipientAccountId":"111122223333","responseElements":{"credentials":{"accessKeyId":"ASIAISSUED","sessionToken":"SECRET-TOKEN","expiration":"Jan 1, 2027, 12:00:00 AM"}}}`, at, id)
	}
	type event struct {
		EventID         string
		CloudTrailEvent *string `json:",omitempty"`
	}
	str := func(s string) *string { return &s }
	doc := map[string]any{"Events": []event{
		{"c", str(rec("c", "2026-03-03T00:00:00Z"))},
		{"b", str(rec("b", "2026-03-02T00:00:00Z"))},
		{"x", nil},
		{"y", str(`{"version":"0","detail-type":"AWS API Call via CloudTrail","source":"aws.s3","account":"111122223333","detail":` + rec("y", "2026-03-01T12:00:00Z") + `}`)},
		{"z", str(`not json`)},
		{"a", str(rec("a", "2026-03-01T00:00:00Z"))},
	}, "NextToken": "abc"}
	b, err := json.MarshalIndent(doc, "", "    ")
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	reasons := map[string]int{}
	if err := Read(bytes.NewReader(b), func(r *Record) {
		ids = append(ids, r.EventID)
		if strings.Contains(fmt.Sprintf("%+v", *r), "SECRET-TOKEN") {
			t.Error("the session token was kept")
		}
	}, func(err error) { reasons[Reason(err)]++ }); err != nil {
		t.Fatal(err)
	}
	if strings.Join(ids, ",") != "a,b,c" {
		t.Errorf("records %v, want a,b,c in time order", ids)
	}
	if want := map[string]int{ReasonNotRecord: 1, ReasonForged: 1, ReasonNotJSON: 1}; !cmp.Equal(reasons, want) {
		t.Errorf("skipped %v, want %v", reasons, want)
	}
	// The Lambda reads envelopes only: lookup-events output is no envelope.
	ParseEnvelope(b, func(*Record) { t.Error("a record from lookup-events output in the Lambda") }, func(error) {})
}
