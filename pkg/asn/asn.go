// Package asn answers "which autonomous system announces this address" from a MaxMind-format
// database: GeoLite2-ASN, or GeoIP2-ISP, which carries the same two fields.
// https://dev.maxmind.com/geoip/docs/databases/asn
//
// ASN data is optional everywhere in Outsider: without a database the known-ASN title never
// matches, and findings carry no organisation.
package asn

import (
	"errors"
	"fmt"
	"io/fs"
	"net/netip"

	"github.com/oschwald/maxminddb-golang/v2"
)

// Info is what a database says of an address.
type Info struct {
	Number uint32 // autonomous_system_number; 0 when unknown
	Org    string // autonomous_system_organization
}

// DB is an open ASN database: a MaxMind-format file, or a range table read from CSV. The
// zero of *DB (nil) answers nothing.
type DB struct {
	r      *maxminddb.Reader
	ranges []rng
}

// Open opens a MaxMind-format database file.
func Open(path string) (*DB, error) {
	r, err := maxminddb.Open(path)
	if err != nil {
		// The library's error names the path already when it is the file's.
		var pe *fs.PathError
		if errors.As(err, &pe) {
			return nil, fmt.Errorf("asn: %w", err)
		}
		return nil, fmt.Errorf("asn: %s: %w", path, err)
	}
	return &DB{r: r}, nil
}

// FromBytes opens a database held in memory (one downloaded from S3, say).
func FromBytes(b []byte) (*DB, error) {
	r, err := maxminddb.OpenBytes(b)
	if err != nil {
		return nil, fmt.Errorf("asn: %w", err)
	}
	return &DB{r: r}, nil
}

// Close releases the database.
func (d *DB) Close() error {
	if d == nil || d.r == nil {
		return nil
	}
	return d.r.Close()
}

type record struct {
	Number uint32 `maxminddb:"autonomous_system_number"`
	Org    string `maxminddb:"autonomous_system_organization"`
}

// Lookup returns the ASN of a; ok is false when the database has none for it (or d is nil).
func (d *DB) Lookup(a netip.Addr) (Info, bool) {
	if d == nil || !a.IsValid() {
		return Info{}, false
	}
	if d.r == nil {
		return d.lookupRange(a.Unmap())
	}
	var rec record
	res := d.r.Lookup(a.Unmap())
	if !res.Found() || res.Decode(&rec) != nil || rec.Number == 0 {
		return Info{}, false
	}
	return Info(rec), true
}

// ASN is Lookup in the shape the detector asks for (detect.ASNLookup).
func (d *DB) ASN(a netip.Addr) (number uint32, org string, ok bool) {
	info, ok := d.Lookup(a)
	return info.Number, info.Org, ok
}
