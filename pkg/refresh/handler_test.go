package refresh

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/outsider-sec/outsider/internal/mototest"
)

// TestHandler: the refresher function. An AmazonIpSpaceChanged notification and a scheduled event both refresh;
// a notification whose md5 does not match fails the invocation (Lambda retries it).
func TestHandler(t *testing.T) {
	ctx := context.Background()
	client := s3.NewFromConfig(mototest.Config(t, nil), func(o *s3.Options) { o.UsePathStyle = true })
	if _, err := client.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String("refresher-test")}); err != nil {
		t.Fatal(err)
	}
	body := []byte(`{"syncToken":"1900000000","createDate":"2030-03-17-17-46-40","prefixes":[` + prefixes(12000) + `],"ipv6_prefixes":[]}`)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.Write(body) }))
	defer srv.Close()
	// The wall clock of the publication: a syncToken ahead of it is refused.
	r := &Refresher{HTTP: srv.Client(), URL: srv.URL, S3: client, Bucket: "refresher-test", Key: "ip-ranges.json",
		Now: func() time.Time { return time.Date(2030, 3, 17, 12, 5, 0, 0, time.UTC) }}
	var logs bytes.Buffer
	h := (&Handler{Ranges: r, Log: slog.New(slog.NewJSONHandler(&logs, nil)), Metrics: &logs}).Handle

	bad, _ := json.Marshal(map[string]any{"Records": []any{map[string]any{"EventSource": "aws:sns", "Sns": map[string]any{
		"Message": `{"create-time":"2030-03-17-17-46-40","synctoken":"1900000000","md5":"00000000000000000000000000000000"}`}}}})
	if err := h(ctx, bad); err == nil {
		t.Error("a mismatched md5 did not fail the invocation")
	}
	if !strings.Contains(logs.String(), `"RangesRefused":1`) {
		t.Errorf("a refused file raised no metric:\n%s", logs.String())
	}
	if err := h(ctx, json.RawMessage(`{"source":"aws.events","detail-type":"Scheduled Event","detail":{}}`)); err != nil {
		t.Fatalf("schedule: %v\n%s", err, logs.String())
	}
	head, err := client.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String("refresher-test"), Key: aws.String("ip-ranges.json")})
	if err != nil || head.Metadata["synctoken"] != "1900000000" {
		t.Fatalf("stored: %v %v", head, err)
	}
}

// prefixes writes n distinct /32 prefixes: a file of a size like AWS's.
func prefixes(n int) string {
	var b bytes.Buffer
	for i := 0; i < n; i++ {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(`{"ip_prefix":"3.` + itoa(i/65536%256) + `.` + itoa(i/256%256) + `.` + itoa(i%256) + `/32","region":"us-east-1","service":"AMAZON"}`)
	}
	return b.String()
}

func itoa(i int) string { return strconv.Itoa(i) }
