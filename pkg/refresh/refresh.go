// Package refresh keeps AWS's IP ranges current: the refresher downloads ip-ranges.json
// when AWS announces a change (and on a schedule), validates it and stores it in S3; the
// detector's Watcher reloads the stored copy when it changes. The embedded snapshot is the
// fallback, and an older file never replaces a newer one.
//
// AWS announces changes on arn:aws:sns:us-east-1:806199016981:AmazonIpSpaceChanged; the
// message carries create-time, synctoken, md5 and url, and messages can arrive out of order.
// https://docs.aws.amazon.com/vpc/latest/userguide/subscribe-notifications.html
package refresh

import (
	"bytes"
	"context"
	"crypto/md5"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"

	"github.com/outsider-sec/outsider/pkg/ipranges"
)

// DefaultURL is where AWS publishes the file.
const DefaultURL = "https://ip-ranges.amazonaws.com/ip-ranges.json"

// S3 is the part of the S3 client the refresher and the watcher call.
type S3 interface {
	GetObject(context.Context, *s3.GetObjectInput, ...func(*s3.Options)) (*s3.GetObjectOutput, error)
	PutObject(context.Context, *s3.PutObjectInput, ...func(*s3.Options)) (*s3.PutObjectOutput, error)
	HeadObject(context.Context, *s3.HeadObjectInput, ...func(*s3.Options)) (*s3.HeadObjectOutput, error)
}

// Notice is an AmazonIpSpaceChanged message.
type Notice struct {
	CreateTime string `json:"create-time"`
	SyncToken  string `json:"synctoken"`
	MD5        string `json:"md5"`
	URL        string `json:"url"`
}

// ParseNotice reads the Message of an AmazonIpSpaceChanged notification.
func ParseNotice(message string) (Notice, error) {
	var n Notice
	if err := json.Unmarshal([]byte(message), &n); err != nil {
		return n, fmt.Errorf("refresh: not an ip-space notice: %w", err)
	}
	if n.SyncToken == "" && n.MD5 == "" {
		return n, errors.New("refresh: the notice has neither synctoken nor md5")
	}
	return n, nil
}

// Metadata keys of the stored object.
const (
	metaSyncToken = "synctoken"
	metaPrefixes  = "prefixes"
	metaMD5       = "md5"
)

// minShare is how far the prefix count may fall from one publication to the next before
// the file is taken for a broken one (a truncated download, an empty list).
const minShare = 0.9

// Refresher downloads, validates and stores ip-ranges.json.
type Refresher struct {
	HTTP   *http.Client
	URL    string
	S3     S3
	Bucket string
	Key    string
	Now    func() time.Time // the wall clock; nil: time.Now
}

// Result says what a run did.
type Result struct {
	Stored    bool
	SyncToken int64
	Prefixes  int
	Reason    string // why nothing was stored
}

// ErrInvalid wraps every reason a downloaded file is refused: the stored one is kept.
var ErrInvalid = errors.New("refresh: invalid ip-ranges.json")

// Run downloads the file and stores it when it is valid and newer than the stored one. n
// is the notice that triggered the run (nil on the schedule).
func (r *Refresher) Run(ctx context.Context, n *Notice) (Result, error) {
	url := r.URL
	if url == "" {
		url = DefaultURL
	}
	body, err := r.download(ctx, url)
	if err != nil {
		return Result{}, err
	}
	if n != nil && n.MD5 != "" {
		sum := md5.Sum(body)
		if got := hex.EncodeToString(sum[:]); got != n.MD5 {
			return Result{}, fmt.Errorf("%w: md5 %s, the notice says %s", ErrInvalid, got, n.MD5)
		}
	}
	ranges, err := ipranges.Parse(body)
	if err != nil {
		return Result{}, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	if err := ranges.Plausible(r.now()); err != nil {
		return Result{}, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	v4, v6 := ranges.Len()
	res := Result{SyncToken: ranges.SyncToken, Prefixes: v4 + v6}
	if n != nil && n.SyncToken != "" {
		if want, err := strconv.ParseInt(n.SyncToken, 10, 64); err == nil && ranges.SyncToken < want {
			// The notice is newer than what the URL served: try again later.
			return res, fmt.Errorf("refresh: served syncToken %d is older than the notice's %d", ranges.SyncToken, want)
		}
	}
	storedToken, storedPrefixes, err := r.stored(ctx)
	if err != nil {
		return res, err
	}
	if storedToken == 0 {
		emb := ipranges.Embedded()
		e4, e6 := emb.Len()
		storedPrefixes = e4 + e6
	}
	if ranges.SyncToken <= storedToken {
		res.Reason = fmt.Sprintf("not newer than the stored syncToken %d", storedToken)
		return res, nil
	}
	if float64(res.Prefixes) < minShare*float64(storedPrefixes) {
		return res, fmt.Errorf("%w: %d prefixes, down from %d", ErrInvalid, res.Prefixes, storedPrefixes)
	}
	sum := md5.Sum(body)
	_, err = r.S3.PutObject(ctx, &s3.PutObjectInput{
		Bucket: aws.String(r.Bucket), Key: aws.String(r.Key), Body: bytes.NewReader(body),
		ContentType: aws.String("application/json"),
		Metadata: map[string]string{
			metaSyncToken: strconv.FormatInt(ranges.SyncToken, 10),
			metaPrefixes:  strconv.Itoa(res.Prefixes),
			metaMD5:       hex.EncodeToString(sum[:]),
		},
	})
	if err != nil {
		return res, fmt.Errorf("refresh: store s3://%s/%s: %w", r.Bucket, r.Key, err)
	}
	res.Stored = true
	return res, nil
}

// maxFile bounds the download (the file is about 2.6 MB).
const maxFile = 64 << 20

func (r *Refresher) download(ctx context.Context, url string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, fmt.Errorf("refresh: %w", err)
	}
	client := r.HTTP
	if client == nil {
		client = &http.Client{Timeout: 30 * time.Second}
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("refresh: download %s: %w", url, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("refresh: download %s: %s", url, resp.Status)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxFile+1))
	if err != nil {
		return nil, fmt.Errorf("refresh: download %s: %w", url, err)
	}
	if len(body) > maxFile {
		return nil, fmt.Errorf("%w: larger than %d MiB", ErrInvalid, maxFile>>20)
	}
	return body, nil
}

// stored returns the syncToken and prefix count of the stored file, read from the file
// itself (object metadata is whatever its writer said); 0 when there is none, or when what
// is stored is not a file AWS would publish (a poisoned write never stops later updates).
func (r *Refresher) stored(ctx context.Context) (int64, int, error) {
	out, err := r.S3.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(r.Bucket), Key: aws.String(r.Key)})
	var nf *types.NoSuchKey
	if errors.As(err, &nf) {
		return 0, 0, nil
	}
	if err != nil {
		return 0, 0, fmt.Errorf("refresh: s3://%s/%s: %w", r.Bucket, r.Key, err)
	}
	defer out.Body.Close()
	body, err := io.ReadAll(io.LimitReader(out.Body, maxFile))
	if err != nil {
		return 0, 0, fmt.Errorf("refresh: s3://%s/%s: %w", r.Bucket, r.Key, err)
	}
	ranges, err := ipranges.Parse(body)
	if err == nil {
		err = ranges.Plausible(r.now())
	}
	if err != nil {
		return 0, 0, nil
	}
	v4, v6 := ranges.Len()
	return ranges.SyncToken, v4 + v6, nil
}

func (r *Refresher) now() time.Time {
	if r.Now != nil {
		return r.Now()
	}
	return time.Now()
}

// Watcher reloads the stored file into the detector's ranges when it changes, looking at
// most once every Every (wall time).
type Watcher struct {
	S3      S3
	Bucket  string
	Key     string
	Ranges  *ipranges.Current
	Every   time.Duration
	Now     func() time.Time
	checked time.Time
	etag    string
}

// Check looks for a new stored file if the last look is older than Every, and loads it.
// An error leaves the ranges in use as they were.
func (w *Watcher) Check(ctx context.Context) error {
	now := time.Now
	if w.Now != nil {
		now = w.Now
	}
	if !w.checked.IsZero() && now().Sub(w.checked) < w.Every {
		return nil
	}
	w.checked = now()
	head, err := w.S3.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String(w.Bucket), Key: aws.String(w.Key)})
	var nf *types.NotFound
	if errors.As(err, &nf) {
		return nil // nothing stored yet: the embedded snapshot stands
	}
	if err != nil {
		return fmt.Errorf("refresh: s3://%s/%s: %w", w.Bucket, w.Key, err)
	}
	if etag := aws.ToString(head.ETag); etag == w.etag {
		return nil
	}
	obj, err := w.S3.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(w.Bucket), Key: aws.String(w.Key)})
	if err != nil {
		return fmt.Errorf("refresh: s3://%s/%s: %w", w.Bucket, w.Key, err)
	}
	defer obj.Body.Close()
	body, err := io.ReadAll(io.LimitReader(obj.Body, maxFile))
	if err != nil {
		return fmt.Errorf("refresh: s3://%s/%s: %w", w.Bucket, w.Key, err)
	}
	r, err := ipranges.Parse(body)
	if err == nil {
		// The bucket is written by the refresher only; a file that does not look like
		// AWS's is refused all the same, and the ranges in use stay.
		err = r.Plausible(now())
	}
	if err != nil {
		return fmt.Errorf("refresh: s3://%s/%s: %w", w.Bucket, w.Key, err)
	}
	w.etag = aws.ToString(obj.ETag)
	if err := w.Ranges.Update(r); err != nil && !errors.Is(err, ipranges.ErrStale) {
		return err
	}
	return nil
}
