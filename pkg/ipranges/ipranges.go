// Package ipranges owns AWS's published IP address ranges (ip-ranges.json): parsing both of
// its schemas, the snapshot embedded in the binary, and the question "is this address inside
// AWS, and where". A newer file can replace the current one at run time; an older one never
// does.
//
// The file and its fields: https://docs.aws.amazon.com/vpc/latest/userguide/aws-ip-ranges.html
package ipranges

import (
	"bytes"
	_ "embed"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"slices"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/goccy/go-json"
	"github.com/klauspost/compress/gzip"

	"github.com/gaissmai/bart"
)

// Info describes the AWS prefix that holds an address.
type Info struct {
	Prefix   netip.Prefix
	Region   string   // "eu-west-1", or "GLOBAL"
	Services []string // every service the prefix is listed under ("AMAZON", "EC2", …), sorted
}

// Ranges is one parsed ip-ranges.json. It is immutable and safe for concurrent use.
type Ranges struct {
	SyncToken  int64  // syncToken: publication time in Unix seconds; larger is newer
	CreateDate string // createDate as published ("2026-08-22-15-17-05")
	table      bart.Table[*Info]
	v4, v6     int // unique prefixes
}

type file struct {
	SyncToken  string `json:"syncToken"`
	CreateDate string `json:"createDate"`
	Prefixes   []struct {
		IPPrefix string `json:"ip_prefix"`
		Region   string `json:"region"`
		Service  string `json:"service"`
	} `json:"prefixes"`
	IPv6Prefixes []struct {
		IPv6Prefix string `json:"ipv6_prefix"`
		Region     string `json:"region"`
		Service    string `json:"service"`
	} `json:"ipv6_prefixes"`
}

// ErrEmpty means a file parsed but listed no prefixes: never a real publication.
var ErrEmpty = errors.New("ipranges: no prefixes")

// ErrImplausible means a file does not look like AWS's: it would make the detector
// blind (a prefix covering much of the internet) or outlive every real publication (a
// syncToken in the future). Such a file is refused, and the ranges in use stay.
var ErrImplausible = errors.New("ipranges: not a file AWS would publish")

// The widest prefixes a file may hold. AWS's widest were /12 (IPv4) and /32 (IPv6) in
// 2018 and /11 and /32 in 2026 (the snapshots under testdata); the bounds leave a margin
// of three and eight bits.
const (
	minBits4 = 8
	minBits6 = 24
)

// maxShare4 bounds the share of the IPv4 space a file may cover. AWS's prefixes, collapsed,
// covered 0.91% of it on 2018-12-28 and 2.37% on 2026-08-22 (the snapshots under
// testdata); 8% is more than three times the largest. A file of 256 prefixes N.0.0.0/8,
// each as wide as the bound above allows, covers all of it.
const maxShare4 = 0.08

// createDateLayout is createDate's layout; syncToken is the same instant in Unix seconds
// (equal to the second in every snapshot under testdata).
// https://docs.aws.amazon.com/vpc/latest/userguide/aws-ip-syntax.html
const createDateLayout = "2006-01-02-15-04-05"

// Plausible reports whether r looks like a file AWS publishes at now: no prefix wider than
// the bounds (0.0.0.0/0 and ::/0 included), no more of the IPv4 space than maxShare4, a
// syncToken (its publication time) no more than a day ahead of now, and the same instant
// as its createDate.
func (r *Ranges) Plausible(now time.Time) error {
	if r.SyncToken > now.Add(24*time.Hour).Unix() {
		return fmt.Errorf("%w: syncToken %d is in the future (%s)", ErrImplausible, r.SyncToken, time.Unix(r.SyncToken, 0).UTC().Format(time.RFC3339))
	}
	created, err := time.Parse(createDateLayout, r.CreateDate)
	if err != nil {
		return fmt.Errorf("%w: createDate %q is not a date", ErrImplausible, truncate(r.CreateDate, 32))
	}
	if d := r.SyncToken - created.Unix(); d < -60 || d > 60 {
		return fmt.Errorf("%w: syncToken %d is not its createDate %s", ErrImplausible, r.SyncToken, r.CreateDate)
	}
	for p := range r.table.All() {
		if p.Addr().Is4() && p.Bits() < minBits4 || p.Addr().Is6() && p.Bits() < minBits6 {
			return fmt.Errorf("%w: prefix %s is wider than any AWS publishes", ErrImplausible, p)
		}
	}
	if share := r.Share4(); share > maxShare4 {
		return fmt.Errorf("%w: covers %.1f%% of the IPv4 space, AWS's prefixes never more than %.0f%%", ErrImplausible, 100*share, 100*maxShare4)
	}
	return nil
}

// Share4 is the share of the IPv4 space the file's prefixes cover (nested ones once).
func (r *Ranges) Share4() float64 {
	var ps []netip.Prefix
	for p := range r.table.All4() {
		ps = append(ps, p)
	}
	// Two prefixes nest or are apart: in address order (the wider first), a prefix that
	// starts before the covered end is inside the last counted one.
	slices.SortFunc(ps, func(a, b netip.Prefix) int {
		if c := a.Addr().Compare(b.Addr()); c != 0 {
			return c
		}
		return a.Bits() - b.Bits()
	})
	var covered, end uint64 // end: first address after the last counted prefix
	for _, p := range ps {
		a := p.Addr().As4()
		start := uint64(a[0])<<24 | uint64(a[1])<<16 | uint64(a[2])<<8 | uint64(a[3])
		if start < end {
			continue
		}
		size := uint64(1) << (32 - p.Bits())
		covered += size
		end = start + size
	}
	return float64(covered) / (1 << 32)
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}

// Parse reads an ip-ranges.json (either schema: with or without network_border_group).
// The same CIDR listed under several services is stored once with all its services.
func Parse(b []byte) (*Ranges, error) {
	var f file
	if err := json.Unmarshal(b, &f); err != nil {
		return nil, fmt.Errorf("ipranges: %w", err)
	}
	tok, err := strconv.ParseInt(f.SyncToken, 10, 64)
	if err != nil {
		return nil, fmt.Errorf("ipranges: syncToken %q: %w", f.SyncToken, err)
	}
	r := &Ranges{SyncToken: tok, CreateDate: f.CreateDate}
	add := func(cidr, region, service string) error {
		p, err := netip.ParsePrefix(cidr)
		if err != nil {
			return fmt.Errorf("ipranges: prefix %q: %w", cidr, err)
		}
		p = p.Masked()
		if in, ok := r.table.Get(p); ok {
			if !slices.Contains(in.Services, service) {
				in.Services = append(in.Services, service)
				slices.Sort(in.Services)
			}
			return nil
		}
		r.table.Insert(p, &Info{Prefix: p, Region: region, Services: []string{service}})
		if p.Addr().Is4() {
			r.v4++
		} else {
			r.v6++
		}
		return nil
	}
	for _, p := range f.Prefixes {
		if err := add(p.IPPrefix, p.Region, p.Service); err != nil {
			return nil, err
		}
	}
	for _, p := range f.IPv6Prefixes {
		if err := add(p.IPv6Prefix, p.Region, p.Service); err != nil {
			return nil, err
		}
	}
	if r.v4+r.v6 == 0 {
		return nil, ErrEmpty
	}
	return r, nil
}

// Lookup returns the most specific AWS prefix holding a, if any. IPv4-mapped IPv6
// addresses are unmapped first.
func (r *Ranges) Lookup(a netip.Addr) (*Info, bool) {
	return r.table.Lookup(a.Unmap())
}

// Contains reports whether a is in any published AWS prefix.
func (r *Ranges) Contains(a netip.Addr) bool {
	_, ok := r.table.Lookup(a.Unmap())
	return ok
}

// Len returns the number of unique IPv4 and IPv6 prefixes.
func (r *Ranges) Len() (v4, v6 int) { return r.v4, r.v6 }

// The newest snapshot we ship, gzipped (ip-ranges.json of 2026-08-22-15-17-05).
//
//go:embed ip-ranges.json.gz
var embedded []byte

// Embedded parses the snapshot built into the binary.
func Embedded() *Ranges {
	zr, err := gzip.NewReader(bytes.NewReader(embedded))
	if err != nil {
		panic("ipranges: embedded snapshot: " + err.Error()) // a build defect, caught by tests
	}
	// The gzip trailer's last four bytes are the uncompressed size: one allocation, one
	// pass (this is part of every cold start).
	size := binary.LittleEndian.Uint32(embedded[len(embedded)-4:])
	b := make([]byte, size)
	if _, err := io.ReadFull(zr, b); err != nil {
		panic("ipranges: embedded snapshot: " + err.Error())
	}
	r, err := Parse(b)
	if err != nil {
		panic("ipranges: embedded snapshot: " + err.Error())
	}
	return r
}

// ErrStale is returned by Current.Update for a file that is not newer than the one in use:
// AWS's change notifications can arrive out of order, and going back would forget ranges.
var ErrStale = errors.New("ipranges: not newer than the ranges in use")

// Current holds the ranges in use and swaps in newer ones atomically.
type Current struct{ p atomic.Pointer[Ranges] }

// NewCurrent starts with r.
func NewCurrent(r *Ranges) *Current {
	c := &Current{}
	c.p.Store(r)
	return c
}

// Load returns the ranges in use.
func (c *Current) Load() *Ranges { return c.p.Load() }

// Update replaces the ranges in use with r when r's syncToken is newer.
func (c *Current) Update(r *Ranges) error {
	for {
		old := c.p.Load()
		if old != nil && r.SyncToken <= old.SyncToken {
			return fmt.Errorf("%w: syncToken %d, in use %d", ErrStale, r.SyncToken, old.SyncToken)
		}
		if c.p.CompareAndSwap(old, r) {
			return nil
		}
	}
}

// Prefixes lists the prefixes of a region listed under a service, in address order.
func (r *Ranges) Prefixes(region, service string) []netip.Prefix {
	var out []netip.Prefix
	for p, in := range r.table.AllSorted() {
		if in.Region == region && slices.Contains(in.Services, service) {
			out = append(out, p)
		}
	}
	return out
}

// Contains reports whether a is in the ranges in use.
func (c *Current) Contains(a netip.Addr) bool { return c.p.Load().Contains(a) }

// Region returns the region of the AWS prefix holding a, or "".
func (r *Ranges) Region(a netip.Addr) string {
	if in, ok := r.Lookup(a); ok {
		return in.Region
	}
	return ""
}

// Region returns the region of the AWS prefix holding a in the ranges in use, or "".
func (c *Current) Region(a netip.Addr) string { return c.p.Load().Region(a) }
