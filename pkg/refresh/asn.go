package refresh

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"

	"github.com/outsider-sec/outsider/pkg/asn"
)

// ASNConverter downloads keyless ASN range tables (the ip-location-db CSVs: RouteViews,
// NRO, DB-IP; CC BY 4.0), converts them to a MaxMind-format database and stores it where
// the detector loads its ASN database from.
type ASNConverter struct {
	HTTP    *http.Client
	Sources []string // URLs of the tables (IPv4 and IPv6), plain or gzipped CSV
	S3      S3
	Bucket  string
	Key     string
}

// Due reports whether the stored database is missing or older than every: the tables
// change daily, and downloading them hourly would be waste.
func (c *ASNConverter) Due(ctx context.Context, now time.Time, every time.Duration) (bool, error) {
	head, err := c.S3.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String(c.Bucket), Key: aws.String(c.Key)})
	var nf *types.NotFound
	if errors.As(err, &nf) {
		return true, nil
	}
	if err != nil {
		return false, fmt.Errorf("refresh: asn: s3://%s/%s: %w", c.Bucket, c.Key, err)
	}
	return head.LastModified == nil || now.Sub(*head.LastModified) >= every, nil
}

// maxTable bounds one downloaded table (the IPv4 one is about 25 MB uncompressed).
const maxTable = 256 << 20

// Run converts and stores; it returns the database's size.
func (c *ASNConverter) Run(ctx context.Context) (int, error) {
	client := c.HTTP
	if client == nil {
		client = &http.Client{Timeout: 2 * time.Minute}
	}
	var tables []io.Reader
	for _, url := range c.Sources {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return 0, fmt.Errorf("refresh: asn: %w", err)
		}
		resp, err := client.Do(req)
		if err != nil {
			return 0, fmt.Errorf("refresh: asn: download %s: %w", url, err)
		}
		body, err := io.ReadAll(io.LimitReader(resp.Body, maxTable))
		resp.Body.Close()
		if err != nil || resp.StatusCode != http.StatusOK {
			return 0, fmt.Errorf("refresh: asn: download %s: %s %v", url, resp.Status, err)
		}
		tables = append(tables, bytes.NewReader(body))
	}
	db, err := asn.ReadCSV(tables...)
	if err != nil {
		return 0, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	var out bytes.Buffer
	if err := db.WriteMMDB(&out); err != nil {
		return 0, err
	}
	// What the detector will load must load: check before replacing the stored one.
	if _, err := asn.FromBytes(out.Bytes()); err != nil {
		return 0, fmt.Errorf("%w: the converted database does not open: %w", ErrInvalid, err)
	}
	if _, err := c.S3.PutObject(ctx, &s3.PutObjectInput{
		Bucket: aws.String(c.Bucket), Key: aws.String(c.Key), Body: bytes.NewReader(out.Bytes()),
		ContentType: aws.String("application/octet-stream"),
	}); err != nil {
		return 0, fmt.Errorf("refresh: asn: store s3://%s/%s: %w", c.Bucket, c.Key, err)
	}
	return out.Len(), nil
}

// LoadASN reads the ASN database the refresher stored (or any MaxMind-format file in S3).
func LoadASN(ctx context.Context, c S3, bucket, key string) (*asn.DB, error) {
	out, err := c.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(bucket), Key: aws.String(key)})
	if err != nil {
		return nil, fmt.Errorf("refresh: get s3://%s/%s: %w", bucket, key, err)
	}
	defer out.Body.Close()
	b, err := io.ReadAll(out.Body)
	if err != nil {
		return nil, fmt.Errorf("refresh: read s3://%s/%s: %w", bucket, key, err)
	}
	return asn.FromBytes(b)
}
