// Command gentrail writes a synthetic CloudTrail history (NDJSON) for benchmarks:
//
//	go run ./pkg/gen/cmd/gentrail -records 1000000 > /tmp/history.ndjson
package main

import (
	"flag"
	"fmt"
	"os"

	"github.com/outsider-sec/outsider/pkg/gen"
)

func main() {
	n := flag.Int("records", 1_000_000, "records to write")
	seed := flag.Uint64("seed", 42, "random seed: the same seed writes the same history")
	days := flag.Int("days", 30, "days the history spans")
	thefts := flag.Int("thefts", 3, "function keys stolen and used from outside")
	flag.Parse()
	cfg := gen.Default(*n)
	cfg.Seed, cfg.Days, cfg.Thefts = *seed, *days, *thefts
	s, err := gen.Write(cfg, os.Stdout)
	if err != nil {
		fmt.Fprintln(os.Stderr, "gentrail:", err)
		os.Exit(1)
	}
	fmt.Fprintf(os.Stderr, "gentrail: %d records: %d Lambda keys issued, %d Lambda calls inside AWS, %d calls by people from outside, %d AWS-internal, %d thefts\n",
		s.Records, s.LambdaIssued, s.LambdaInside, s.People, s.Internal, s.Thefts)
}
