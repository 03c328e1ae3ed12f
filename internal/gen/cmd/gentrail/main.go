// Command gentrail writes a synthetic CloudTrail history for benchmarks, as NDJSON of
// records, NDJSON of EventBridge envelopes, a CloudTrail S3 folder of small gzipped log
// files (every account and region in its own folder), or one NDJSON file per account:
//
//	go run ./internal/gen/cmd/gentrail -records 1000000 > /tmp/history.ndjson
//	go run ./internal/gen/cmd/gentrail -records 1000000 -form trail -out /tmp/trail
//	go run ./internal/gen/cmd/gentrail -mix dense -records 420000 -form accounts -out /tmp/accounts
//
// The light mix (the default) is mostly AWS-internal traffic of three accounts; the dense
// one is 400 accounts whose trails are mostly Lambda, with cross-account chains.
package main

import (
	"bufio"
	"bytes"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/outsider-sec/outsider/internal/gen"
)

func main() {
	n := flag.Int("records", 1_000_000, "records to write")
	seed := flag.Uint64("seed", 42, "random seed: the same seed writes the same history")
	days := flag.Int("days", 0, "days the history spans (default: 30 light, 47 dense)")
	thefts := flag.Int("thefts", 3, "function keys stolen and used from outside (the light mix)")
	mix := flag.String("mix", "light", "light (three accounts, mostly AWS-internal) or dense (400 accounts, mostly Lambda)")
	accounts := flag.Int("accounts", 0, "accounts of the dense mix (default 400)")
	form := flag.String("form", "ndjson", "ndjson (records), envelopes (EventBridge events), trail (a CloudTrail S3 folder under -out), or accounts (one NDJSON file per account under -out)")
	out := flag.String("out", "", "the folder of -form trail and -form accounts")
	flag.Parse()
	if err := run(*n, *seed, *days, *thefts, *accounts, *mix, *form, *out); err != nil {
		fmt.Fprintln(os.Stderr, "gentrail:", err)
		os.Exit(1)
	}
}

func run(n int, seed uint64, days, thefts, accounts int, mix, form, out string) error {
	switch form {
	case "ndjson", "envelopes":
	case "trail", "accounts":
		if out == "" {
			return fmt.Errorf("-form %s needs -out DIR", form)
		}
	default:
		return fmt.Errorf("-form %q is not ndjson, envelopes, trail or accounts", form)
	}
	var write func(emit func(account string, line []byte) error) error
	switch mix {
	case "light":
		cfg := gen.Default(n)
		cfg.Seed, cfg.Thefts = seed, thefts
		if days > 0 {
			cfg.Days = days
		}
		write = func(emit func(string, []byte) error) error {
			pr, pw := io.Pipe()
			done := make(chan error, 1)
			go func() {
				s, err := gen.Write(cfg, pw)
				fmt.Fprintf(os.Stderr, "gentrail: %d records: %d Lambda keys issued, %d Lambda calls inside AWS, %d calls by people from outside, %d AWS-internal, %d thefts\n",
					s.Records, s.LambdaIssued, s.LambdaInside, s.People, s.Internal, s.Thefts)
				pw.CloseWithError(err)
				done <- err
			}()
			sc := bufio.NewScanner(pr)
			sc.Buffer(nil, 1<<20)
			for sc.Scan() {
				line := bytes.TrimSpace(sc.Bytes())
				if len(line) == 0 {
					continue
				}
				if err := emit(accountOf(line), append(line, '\n')); err != nil {
					pr.CloseWithError(err)
					<-done
					return err
				}
			}
			if err := sc.Err(); err != nil {
				return err
			}
			return <-done
		}
	case "dense":
		cfg := gen.Dense(n)
		cfg.Seed = seed
		if days > 0 {
			cfg.Days = days
		}
		if accounts > 0 {
			cfg.Accounts = accounts
		}
		write = func(emit func(string, []byte) error) error {
			s, err := gen.WriteDense(cfg, emit)
			fmt.Fprintf(os.Stderr, "gentrail: %d records: %d Lambda keys issued, %d Lambda calls inside AWS, %d AWS-internal, %d calls by people from outside, %d cross-account chains, %d thefts (%d calls from outside, %d thefts of a chained key)\n",
				s.Records, s.LambdaIssued, s.LambdaInside, s.Internal, s.People, s.Chains, s.Thefts, s.TheftCalls, s.ChainedThefts)
			return err
		}
	default:
		return fmt.Errorf("-mix %q is not light or dense", mix)
	}

	switch form {
	case "ndjson", "envelopes":
		bw := bufio.NewWriterSize(os.Stdout, 1<<20)
		err := write(func(_ string, line []byte) error {
			if form == "ndjson" {
				_, err := bw.Write(line)
				return err
			}
			env, err := gen.Envelope(bytes.TrimSpace(line))
			if err != nil {
				return err
			}
			bw.Write(env)
			return bw.WriteByte('\n')
		})
		if err != nil {
			return err
		}
		return bw.Flush()
	case "trail":
		tw := gen.NewTrailWriter(out)
		if mix == "dense" {
			// 1,000 records an account over weeks: a file every five minutes would be a
			// file a record; twelve hours of an account and region a file keeps the
			// folder near four records a file. Replay it with a reorder window of 13h.
			tw.Slot = 12 * time.Hour
		}
		if err := write(func(_ string, line []byte) error { return tw.Add(bytes.TrimSpace(line)) }); err != nil {
			return err
		}
		files, err := tw.Close()
		fmt.Fprintf(os.Stderr, "gentrail: %d log files under %s\n", files, out)
		return err
	default: // accounts
		if err := os.MkdirAll(out, 0o755); err != nil {
			return err
		}
		files := map[string]*os.File{}
		ws := map[string]*bufio.Writer{}
		err := write(func(account string, line []byte) error {
			w := ws[account]
			if w == nil {
				f, err := os.Create(filepath.Join(out, account+".ndjson"))
				if err != nil {
					return err
				}
				files[account], w = f, bufio.NewWriterSize(f, 32<<10)
				ws[account] = w
			}
			_, err := w.Write(line)
			return err
		})
		for a, f := range files {
			if ferr := ws[a].Flush(); ferr != nil && err == nil {
				err = ferr
			}
			if cerr := f.Close(); cerr != nil && err == nil {
				err = cerr
			}
		}
		fmt.Fprintf(os.Stderr, "gentrail: %d account files under %s\n", len(files), out)
		return err
	}
}

// accountOf is a light record's recipientAccountId (the generator writes it last but two
// fields, always).
func accountOf(line []byte) string {
	const k = `"recipientAccountId":"`
	i := bytes.Index(line, []byte(k))
	if i < 0 {
		return "unknown"
	}
	rest := line[i+len(k):]
	if j := bytes.IndexByte(rest, '"'); j >= 0 {
		return string(rest[:j])
	}
	return "unknown"
}
