package asn

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"

	"github.com/maxmind/mmdbwriter"
	"github.com/maxmind/mmdbwriter/mmdbtype"
)

// rng is one row of a range table: [start, end] announced by an AS.
type rng struct {
	start, end netip.Addr
	info       Info
}

// ReadCSV reads range tables in the ip-location-db ASN form, plain or gzipped:
// "start,end,asn,organisation" with inclusive ranges of IPv4 or IPv6 addresses.
// https://github.com/sapics/ip-location-db (CC BY 4.0: RouteViews, DB-IP, NRO)
func ReadCSV(readers ...io.Reader) (*DB, error) {
	var rows []rng
	orgs := map[string]string{}
	for i, r := range readers {
		br := bufio.NewReader(r)
		if magic, _ := br.Peek(2); len(magic) == 2 && magic[0] == 0x1f && magic[1] == 0x8b {
			zr, err := gzip.NewReader(br)
			if err != nil {
				return nil, fmt.Errorf("asn: table %d: %w", i+1, err)
			}
			br = bufio.NewReader(zr)
		}
		cr := csv.NewReader(br)
		cr.FieldsPerRecord = -1
		for line := 1; ; line++ {
			rec, err := cr.Read()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				return nil, fmt.Errorf("asn: table %d: %w", i+1, err)
			}
			if len(rec) < 3 {
				return nil, fmt.Errorf("asn: table %d line %d: want start,end,asn[,organisation]", i+1, line)
			}
			start, err1 := netip.ParseAddr(strings.TrimSpace(rec[0]))
			end, err2 := netip.ParseAddr(strings.TrimSpace(rec[1]))
			n, err3 := strconv.ParseUint(strings.TrimSpace(rec[2]), 10, 32)
			if err := errors.Join(err1, err2, err3); err != nil {
				if line == 1 {
					continue // a header
				}
				return nil, fmt.Errorf("asn: table %d line %d: %w", i+1, line, err)
			}
			start, end = start.Unmap(), end.Unmap()
			if start.Is4() != end.Is4() || end.Less(start) {
				return nil, fmt.Errorf("asn: table %d line %d: %s-%s is not a range", i+1, line, start, end)
			}
			org := ""
			if len(rec) > 3 {
				org = rec[3]
				if o, ok := orgs[org]; ok {
					org = o
				} else {
					orgs[org] = org
				}
			}
			rows = append(rows, rng{start: start, end: end, info: Info{Number: uint32(n), Org: org}})
		}
	}
	if len(rows) == 0 {
		return nil, errors.New("asn: no ranges")
	}
	slices.SortFunc(rows, func(a, b rng) int { return a.start.Compare(b.start) })
	return &DB{ranges: rows}, nil
}

// lookupRange finds a in the sorted range table.
func (d *DB) lookupRange(a netip.Addr) (Info, bool) {
	i, found := slices.BinarySearchFunc(d.ranges, a, func(r rng, a netip.Addr) int { return r.start.Compare(a) })
	if !found {
		i-- // the last range starting before a
	}
	if i < 0 || i >= len(d.ranges) {
		return Info{}, false
	}
	r := d.ranges[i]
	if a.Compare(r.end) > 0 || r.info.Number == 0 {
		return Info{}, false
	}
	return r.info, true
}

// OpenAny opens what --asn-db names: a MaxMind-format database, or one or more
// comma-separated range tables (.csv or .csv.gz).
func OpenAny(spec string) (*DB, error) {
	paths := strings.Split(spec, ",")
	if len(paths) == 1 && !strings.Contains(paths[0], ".csv") {
		return Open(paths[0])
	}
	var readers []io.Reader
	for _, p := range paths {
		f, err := os.Open(strings.TrimSpace(p))
		if err != nil {
			return nil, fmt.Errorf("asn: %w", err)
		}
		defer f.Close()
		readers = append(readers, f)
	}
	return ReadCSV(readers...)
}

// WriteMMDB writes a range-table database as a MaxMind DB with the GeoLite2-ASN fields,
// for the detector to load from S3 (a keyless alternative to GeoLite2-ASN).
func (d *DB) WriteMMDB(w io.Writer) error {
	if d == nil || d.ranges == nil {
		return errors.New("asn: only range tables can be written")
	}
	tree, err := mmdbwriter.New(mmdbwriter.Options{DatabaseType: "GeoLite2-ASN", RecordSize: 28, IncludeReservedNetworks: true, DisableIPv4Aliasing: true})
	if err != nil {
		return fmt.Errorf("asn: %w", err)
	}
	for _, r := range d.ranges {
		rec := mmdbtype.Map{"autonomous_system_number": mmdbtype.Uint32(r.info.Number)}
		if r.info.Org != "" {
			rec["autonomous_system_organization"] = mmdbtype.String(r.info.Org)
		}
		if err := tree.InsertRange(net.IP(r.start.AsSlice()), net.IP(r.end.AsSlice()), rec); err != nil {
			return fmt.Errorf("asn: %s-%s: %w", r.start, r.end, err)
		}
	}
	var buf bytes.Buffer
	if _, err := tree.WriteTo(&buf); err != nil {
		return fmt.Errorf("asn: %w", err)
	}
	_, err = w.Write(buf.Bytes())
	return err
}
