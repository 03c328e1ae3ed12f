// Command gentrail writes a synthetic CloudTrail history for benchmarks, as NDJSON of
// records, NDJSON of EventBridge envelopes, or a CloudTrail S3 folder of small gzipped log
// files (every account and region in its own folder):
//
//	go run ./internal/gen/cmd/gentrail -records 1000000 > /tmp/history.ndjson
//	go run ./internal/gen/cmd/gentrail -records 1000000 -form trail -out /tmp/trail
package main

import (
	"bufio"
	"bytes"
	"flag"
	"fmt"
	"io"
	"os"

	"github.com/outsider-sec/outsider/internal/gen"
)

func main() {
	n := flag.Int("records", 1_000_000, "records to write")
	seed := flag.Uint64("seed", 42, "random seed: the same seed writes the same history")
	days := flag.Int("days", 30, "days the history spans")
	thefts := flag.Int("thefts", 3, "function keys stolen and used from outside")
	form := flag.String("form", "ndjson", "ndjson (records), envelopes (EventBridge events), or trail (a CloudTrail S3 folder under -out)")
	out := flag.String("out", "", "the folder of -form trail")
	flag.Parse()
	if err := run(*n, *seed, *days, *thefts, *form, *out); err != nil {
		fmt.Fprintln(os.Stderr, "gentrail:", err)
		os.Exit(1)
	}
}

func run(n int, seed uint64, days, thefts int, form, out string) error {
	cfg := gen.Default(n)
	cfg.Seed, cfg.Days, cfg.Thefts = seed, days, thefts
	if form == "ndjson" {
		s, err := gen.Write(cfg, os.Stdout)
		report(s)
		return err
	}
	if form != "envelopes" && form != "trail" {
		return fmt.Errorf("-form %q is not ndjson, envelopes or trail", form)
	}
	if form == "trail" && out == "" {
		return fmt.Errorf("-form trail needs -out DIR")
	}
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() {
		s, err := gen.Write(cfg, pw)
		report(s)
		pw.CloseWithError(err)
		done <- err
	}()
	sc := bufio.NewScanner(pr)
	sc.Buffer(nil, 1<<20)
	bw := bufio.NewWriterSize(os.Stdout, 1<<20)
	tw := gen.NewTrailWriter(out)
	for sc.Scan() {
		line := bytes.TrimSpace(sc.Bytes())
		if len(line) == 0 {
			continue
		}
		if form == "trail" {
			if err := tw.Add(line); err != nil {
				return err
			}
			continue
		}
		env, err := gen.Envelope(line)
		if err != nil {
			return err
		}
		bw.Write(env)
		bw.WriteByte('\n')
	}
	if err := sc.Err(); err != nil {
		return err
	}
	if err := <-done; err != nil {
		return err
	}
	if form == "trail" {
		files, err := tw.Close()
		fmt.Fprintf(os.Stderr, "gentrail: %d log files under %s\n", files, out)
		return err
	}
	return bw.Flush()
}

func report(s gen.Summary) {
	fmt.Fprintf(os.Stderr, "gentrail: %d records: %d Lambda keys issued, %d Lambda calls inside AWS, %d calls by people from outside, %d AWS-internal, %d thefts\n",
		s.Records, s.LambdaIssued, s.LambdaInside, s.People, s.Internal, s.Thefts)
}
