package replay

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/outsider-sec/outsider/internal/gen"
	"github.com/outsider-sec/outsider/pkg/cloudtrail"
)

// The properties of order and delivery, on seeded generated histories, through the same
// command a team runs: delivered twice, restarted between records, shuffled within the
// reorder window, and backfilled after the live period, a history gives the findings of
// one ordered pass — the same findings, counts, addresses and calls.

// outcome is what a finding says, less what depends on when it was printed.
type outcome struct {
	ID, Title, Count, Failed, First, Last, Sources, Calls string
}

// history writes a generated history and returns its lines (time-ordered).
func history(t *testing.T, seed uint64, records, days int, start time.Time) [][]byte {
	t.Helper()
	cfg := gen.Default(records)
	cfg.Seed, cfg.Thefts, cfg.Functions, cfg.Days, cfg.Start = seed, 6, 6, days, start
	var buf bytes.Buffer
	if _, err := gen.Write(cfg, &buf); err != nil {
		t.Fatal(err)
	}
	return bytes.SplitAfter(bytes.TrimSpace(buf.Bytes()), []byte("\n"))
}

func writeLines(t *testing.T, lines [][]byte) string {
	t.Helper()
	f, err := os.CreateTemp(t.TempDir(), "*.ndjson")
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range lines {
		f.Write(bytes.TrimRight(l, "\n"))
		f.Write([]byte("\n"))
	}
	f.Close()
	return f.Name()
}

// replayRuns replays each run (a list of files) in turn into one state, the first from
// fresh, and returns the final state of every finding printed.
func replayRuns(t *testing.T, runs ...[]string) map[string]outcome {
	t.Helper()
	return replayWith(t, nil, runs...)
}

// replayWith is replayRuns with more flags.
func replayWith(t *testing.T, flags []string, runs ...[]string) map[string]outcome {
	t.Helper()
	state := t.TempDir()
	out := map[string]outcome{}
	for i, files := range runs {
		args := append([]string{"--state", state, "--format", "json", "--progress", "0", "--asn-db", "testdata/GeoLite2-ASN-Test.mmdb"}, flags...)
		if i == 0 {
			args = append(args, "--fresh")
		}
		var stdout, stderr bytes.Buffer
		if code := Main(append(args, files...), nil, &stdout, &stderr); code != ExitOK {
			t.Fatalf("replay %v: exit %d: %s", files, code, stderr.String())
		}
		for _, line := range bytes.Split(bytes.TrimSpace(stdout.Bytes()), []byte("\n")) {
			if len(line) == 0 {
				continue
			}
			var f struct {
				Id, Title     string
				ProductFields map[string]string
			}
			if err := json.Unmarshal(line, &f); err != nil {
				t.Fatalf("not JSON: %s", line)
			}
			pf := f.ProductFields
			sorted := func(s string) string {
				parts := strings.Split(s, ",")
				slices.Sort(parts)
				return strings.Join(parts, ",")
			}
			out[f.Id] = outcome{f.Id, f.Title, pf["outsider/Count"], pf["outsider/FailedCount"], pf["outsider/FirstSeen"], pf["outsider/LastSeen"],
				sorted(pf["outsider/SourceIPs"]), sorted(pf["outsider/ApiCalls"])}
		}
	}
	return out
}

func sameOutcome(t *testing.T, what string, want, got map[string]outcome) {
	t.Helper()
	if len(want) == 0 {
		t.Fatalf("%s: the reference run raised no finding: the property says nothing", what)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("%s (-one ordered pass +got):\n%s", what, diff)
	}
}

var seeds = []uint64{1, 2, 3}

func TestPropertyDeliveredTwice(t *testing.T) {
	for _, seed := range seeds {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			lines := history(t, seed, 6000, 40, time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC))
			in := writeLines(t, lines)
			want := replayRuns(t, []string{in})
			sameOutcome(t, "the same files twice in one run", want, replayRuns(t, []string{in, in}))
			sameOutcome(t, "a second run of the same files", want, replayRuns(t, []string{in}, []string{in}))
		})
	}
}

func TestPropertyRestart(t *testing.T) {
	for _, seed := range seeds {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			lines := history(t, seed, 6000, 40, time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC))
			want := replayRuns(t, []string{writeLines(t, lines)})
			rng := rand.New(rand.NewPCG(seed, 7))
			// Restarts between random records: each part is a run of its own.
			cuts := []int{0}
			for range 6 {
				cuts = append(cuts, rng.IntN(len(lines)))
			}
			cuts = append(cuts, len(lines))
			slices.Sort(cuts)
			var runs [][]string
			for i := 1; i < len(cuts); i++ {
				runs = append(runs, []string{writeLines(t, lines[cuts[i-1]:cuts[i]])})
			}
			sameOutcome(t, fmt.Sprintf("restarted at records %v", cuts[1:len(cuts)-1]), want, replayRuns(t, runs...))
		})
	}
}

func TestPropertyShuffleWithinWindow(t *testing.T) {
	for _, seed := range seeds {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			lines := history(t, seed, 6000, 40, time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC))
			want := replayRuns(t, []string{writeLines(t, lines)})
			// Each record moves by up to 20 minutes of event time, less than the replay's
			// 30-minute window: the order it reads is any such shuffle.
			rng := rand.New(rand.NewPCG(seed, 11))
			type keyed struct {
				at   time.Time
				line []byte
			}
			ks := make([]keyed, len(lines))
			for i, l := range lines {
				var r struct{ EventTime time.Time }
				if err := json.Unmarshal(l, &r); err != nil {
					t.Fatal(err)
				}
				ks[i] = keyed{r.EventTime.Add(time.Duration(rng.IntN(20*60)) * time.Second), l}
			}
			slices.SortStableFunc(ks, func(a, b keyed) int { return a.at.Compare(b.at) })
			shuffled := make([][]byte, len(ks))
			for i, k := range ks {
				shuffled[i] = k.line
			}
			sameOutcome(t, "shuffled within the window", want, replayRuns(t, []string{writeLines(t, shuffled)}))
		})
	}
}

func TestPropertyBackfillAfterLive(t *testing.T) {
	for _, seed := range seeds {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			// Two periods 60 days apart, each with its thefts: the later one is the live
			// period, the earlier one the backfill of older logs.
			start := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
			older := history(t, seed, 5000, 40, start)
			recent := history(t, seed+100, 5000, 40, start.Add(60*24*time.Hour))
			o, r := writeLines(t, older), writeLines(t, recent)
			want := replayRuns(t, []string{o, r})
			got := replayRuns(t, []string{r}, []string{o})
			sameOutcome(t, "backfill after the live period", want, got)
			if again := replayRuns(t, []string{r}, []string{o}, []string{o, r}); !cmp.Equal(want, again) {
				t.Errorf("and delivered again: %s", cmp.Diff(want, again))
			}
		})
	}
}

// TestTrailFolderForms: a history written as a CloudTrail folder (accounts and regions in
// their own folders), as one sorted NDJSON file and as EventBridge envelopes gives the
// same findings.
func TestTrailFolderForms(t *testing.T) {
	lines := history(t, 5, 6000, 40, time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC))
	var recs [][]byte
	for _, l := range lines {
		recs = append(recs, bytes.TrimRight(l, "\n"))
	}
	want := replayRuns(t, []string{writeNDJSON(t, recs, t.TempDir())})
	for _, form := range forms {
		in := form.write(t, recs, t.TempDir())
		sameOutcome(t, form.name, want, replayRuns(t, []string{in}))
	}
}

// TestParallelSameFindings: deciding beside the readers (--parallel 2: one detector; with
// --shards 2, two) gives the findings of reading and deciding in turn (--parallel 1), on
// NDJSON and on a trail folder.
func TestParallelSameFindings(t *testing.T) {
	lines := history(t, 11, 6000, 40, time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC))
	var recs [][]byte
	for _, l := range lines {
		recs = append(recs, bytes.TrimRight(l, "\n"))
	}
	for _, in := range []string{writeNDJSON(t, recs, t.TempDir()), writeLogFiles(t, recs, t.TempDir())} {
		want := replayWith(t, []string{"--parallel", "1"}, []string{in})
		sameOutcome(t, in+": --parallel 2", want, replayWith(t, []string{"--parallel", "2"}, []string{in}))
		sameOutcome(t, in+": --parallel 2 --shards 2", want, replayWith(t, []string{"--parallel", "2", "--shards", "2"}, []string{in}))
	}
}

// TestShardedSameFindings: decisions sharded by account conclude what one detector does, on
// dense histories of many accounts whose functions chain into hub accounts' roles (a
// cross-account AssumeRole is logged in both accounts and decided on both sides) and whose
// thieves use the chained keys: for 1 (beside the readers), 2, 3 and 5 shards, given as one
// sorted file and as one file per account, and in a restart between two halves, the state
// written at the end only or every 700 records.
func TestShardedSameFindings(t *testing.T) {
	for _, seed := range seeds {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			cfg := gen.Dense(16000)
			cfg.Seed, cfg.Accounts, cfg.Hubs, cfg.Days = seed, 24, 3, 40
			dir := t.TempDir()
			all, sorted, files := writeDenseHistory(t, dir, cfg)
			lines := bytes.SplitAfter(all, []byte("\n"))
			first, second := writeLines(t, lines[:len(lines)/2]), writeLines(t, lines[len(lines)/2:])

			requireChained(t, sorted)
			want := replayWith(t, []string{"--parallel", "1"}, []string{sorted})
			// Read in turn, the files of the accounts are coroutines of the merge.
			sameOutcome(t, "one shard, a file per account", want, replayWith(t, []string{"--parallel", "1"}, files))
			// A file per account and day (a folder of daily exports): the files of each
			// account follow one another, and are read one after another (chained).
			daily := splitByDay(t, filepath.Join(dir, "daily"), files)
			sameOutcome(t, "one shard, a file per account and day", want, replayWith(t, []string{"--parallel", "1"}, daily))
			sameOutcome(t, "every core, a file per account and day", want, replayWith(t, []string{"--parallel", "2"}, daily))
			// The accounts' histories one after another in one file (cat *.ndjson): read as
			// segments from where its time goes back, merged as the files are.
			var cat bytes.Buffer
			for _, f := range files {
				b, err := os.ReadFile(f)
				if err != nil {
					t.Fatal(err)
				}
				cat.Write(b)
			}
			concat := filepath.Join(dir, "concatenated.ndjson")
			if err := os.WriteFile(concat, cat.Bytes(), 0o600); err != nil {
				t.Fatal(err)
			}
			sameOutcome(t, "one shard, the histories one after another in one file", want, replayWith(t, []string{"--parallel", "1"}, []string{concat}))
			sameOutcome(t, "every core, the histories one after another in one file", want, replayWith(t, []string{"--parallel", "2"}, []string{concat}))
			// The state written once at the end, and every 700 records: what a shard
			// learned reaches another through the store only at a write.
			defer func(every int) { writeEvery = every }(writeEvery)
			for _, every := range []int{64000, 700} {
				writeEvery = every
				for _, n := range []string{"1", "2", "3", "5"} {
					parallel := n
					if n == "1" {
						parallel = "2" // one detector deciding beside the readers
					}
					par := []string{"--parallel", parallel, "--shards", n}
					name := fmt.Sprintf("%s shards, writing every %d records", n, every)
					sameOutcome(t, name+", sorted", want, replayWith(t, par, []string{sorted}))
					sameOutcome(t, name+", a file per account", want, replayWith(t, par, files))
					sameOutcome(t, name+", restarted half way", want, replayWith(t, par, []string{first}, []string{second}))
				}
			}
		})
	}
}

// TestManyAccountFiles: an organisation of 1,800 accounts given as a file each reads them
// side by side with the smallest read buffer (sharedBufferFor) and concludes what the same
// history sorted in one file does, on one core and on two.
func TestManyAccountFiles(t *testing.T) {
	if testing.Short() {
		t.Skip("1,800 files")
	}
	cfg := gen.Dense(60000)
	cfg.Seed, cfg.Accounts, cfg.Hubs, cfg.Functions, cfg.Days = 7, 1800, 6, 1, 30
	if room := openFilesRoom(); room < cfg.Accounts {
		t.Skipf("the open-file limit leaves room for %d files read side by side", room)
	}
	_, sorted, files := writeDenseHistory(t, t.TempDir(), cfg)
	if len(files) < 800 {
		t.Fatalf("%d account files: the read buffer is not at its smallest", len(files))
	}
	if got := sharedBufferFor(len(files)); got != minSharedBuffer {
		t.Fatalf("the read buffer of %d files is %d bytes, want its smallest, %d", len(files), got, minSharedBuffer)
	}
	want := replayWith(t, []string{"--parallel", "1"}, []string{sorted})
	t.Logf("%d findings", len(want))
	sameOutcome(t, "one core, a file per account", want, replayWith(t, []string{"--parallel", "1"}, files))
	sameOutcome(t, "two cores, a file per account", want, replayWith(t, []string{"--parallel", "2"}, files))
}

// writeDenseHistory writes a dense history into dir as one sorted NDJSON file and as a file
// per account (sorted by name), and returns its lines together.
func writeDenseHistory(t *testing.T, dir string, cfg gen.DenseConfig) (all []byte, sorted string, files []string) {
	t.Helper()
	var buf bytes.Buffer
	perAccount := map[string]*bytes.Buffer{}
	if _, err := gen.WriteDense(cfg, func(account string, line []byte) error {
		buf.Write(line)
		if perAccount[account] == nil {
			perAccount[account] = &bytes.Buffer{}
		}
		perAccount[account].Write(line)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	sorted = filepath.Join(dir, "sorted.ndjson")
	if err := os.WriteFile(sorted, buf.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	for a, b := range perAccount {
		f := filepath.Join(dir, a+".ndjson")
		if err := os.WriteFile(f, b.Bytes(), 0o600); err != nil {
			t.Fatal(err)
		}
		files = append(files, f)
	}
	slices.Sort(files)
	return buf.Bytes(), sorted, files
}

// splitByDay writes each file's lines into a file per day of their eventTime under dir, and
// returns the new files.
func splitByDay(t *testing.T, dir string, files []string) []string {
	t.Helper()
	var out []string
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		days := map[string][]byte{}
		for line := range bytes.Lines(b) {
			at, ok := cloudtrail.EventTime(line)
			if !ok {
				t.Fatalf("%s: a line without an eventTime", f)
			}
			day := at.Format("2006-01-02")
			days[day] = append(days[day], line...)
		}
		sub := filepath.Join(dir, strings.TrimSuffix(filepath.Base(f), ".ndjson"))
		if err := os.MkdirAll(sub, 0o700); err != nil {
			t.Fatal(err)
		}
		for day, lines := range days {
			p := filepath.Join(sub, day+".ndjson")
			if err := os.WriteFile(p, lines, 0o600); err != nil {
				t.Fatal(err)
			}
			out = append(out, p)
		}
	}
	slices.Sort(out)
	return out
}

// requireChained fails t unless a replay of path on one core raises a finding on a chained
// key: a history that tests chains across accounts.
func requireChained(t *testing.T, path string) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	if code := Main([]string{"--fresh", "--state", t.TempDir(), "--format", "json", "--progress", "0", "--parallel", "1", path}, nil, &stdout, &stderr); code != ExitOK {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	if !strings.Contains(stdout.String(), `"outsider/ChainedRoleArn":"arn:aws:iam::`) {
		t.Fatal("no finding on a chained key: the history does not test chains across accounts")
	}
}

// TestPropertyRestartDense restarts a dense history right before each theft: a chained
// key is obtained seconds before a thief uses it, and who issued it must be in the state
// the next run reads, though a run holds what it learns until the state's next write.
func TestPropertyRestartDense(t *testing.T) {
	for _, seed := range seeds {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			cfg := gen.Dense(12000)
			cfg.Seed, cfg.Accounts, cfg.Hubs, cfg.Days = seed, 12, 2, 24
			var all bytes.Buffer
			if _, err := gen.WriteDense(cfg, func(_ string, line []byte) error {
				all.Write(line)
				return nil
			}); err != nil {
				t.Fatal(err)
			}
			lines := bytes.SplitAfter(bytes.TrimSpace(all.Bytes()), []byte("\n"))
			want := replayWith(t, []string{"--parallel", "1"}, []string{writeLines(t, lines)})
			// The generator's thieves come from three networks: a run ends before each
			// theft's first call.
			thief := regexp.MustCompile(`"sourceIPAddress":"(27\.192\.8|36\.192\.7|38\.73\.131)\.`)
			var runs [][]string
			from, chained := 0, 0
			for i := 1; i < len(lines); i++ {
				if thief.Match(lines[i]) && !thief.Match(lines[i-1]) {
					runs = append(runs, []string{writeLines(t, lines[from:i])})
					from = i
					if bytes.Contains(lines[i], []byte("shared-reader")) {
						chained++
					}
				}
			}
			runs = append(runs, []string{writeLines(t, lines[from:])})
			if chained == 0 {
				t.Fatal("no theft of a chained key: the history does not test what a run holds")
			}
			for _, par := range []string{"1", "2"} {
				sameOutcome(t, fmt.Sprintf("--parallel %s, restarted before each of %d thefts", par, len(runs)-1), want, replayWith(t, []string{"--parallel", par}, runs...))
			}
		})
	}
}
