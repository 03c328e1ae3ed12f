// Command asn2mmdb converts ip-location-db ASN range tables (CSV, plain or gzipped) into a
// MaxMind-format database the detector loads from S3 (OUTSIDER_ASN_DB):
//
//	go run ./pkg/asn/cmd/asn2mmdb asn-ipv4.csv.gz asn-ipv6.csv.gz > asn.mmdb
package main

import (
	"bufio"
	"fmt"
	"os"
	"strings"

	"github.com/outsider-sec/outsider/pkg/asn"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: asn2mmdb TABLE.csv[.gz]... > asn.mmdb")
		os.Exit(2)
	}
	db, err := asn.OpenAny(strings.Join(os.Args[1:], ","))
	if err != nil {
		fmt.Fprintln(os.Stderr, "asn2mmdb:", err)
		os.Exit(1)
	}
	w := bufio.NewWriter(os.Stdout)
	if err := db.WriteMMDB(w); err != nil {
		fmt.Fprintln(os.Stderr, "asn2mmdb:", err)
		os.Exit(1)
	}
	if err := w.Flush(); err != nil {
		fmt.Fprintln(os.Stderr, "asn2mmdb:", err)
		os.Exit(1)
	}
}
