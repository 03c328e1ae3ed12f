// Package replay is the local edge of the flow (pkg/flow): it reads CloudTrail files, puts
// their records back in order, runs them through the detector with an embedded state store
// (or the deployed table), and prints findings. It is what a newcomer runs first, and how a
// deployment's history is replayed; cmd/outsider is its command (outsider replay).
package replay

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"runtime/pprof"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"text/tabwriter"
	"time"

	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"

	"github.com/outsider-sec/outsider/pkg/asff"
	"github.com/outsider-sec/outsider/pkg/asn"
	"github.com/outsider-sec/outsider/pkg/awsid"
	"github.com/outsider-sec/outsider/pkg/cloudtrail"
	"github.com/outsider-sec/outsider/pkg/detect"
	"github.com/outsider-sec/outsider/pkg/dynamo"
	"github.com/outsider-sec/outsider/pkg/flow"
	"github.com/outsider-sec/outsider/pkg/ipranges"
	"github.com/outsider-sec/outsider/pkg/notify"
	"github.com/outsider-sec/outsider/pkg/store"
)

// Exit codes.
const (
	ExitOK    = 0
	ExitError = 1 // the run failed part way (the state store failed)
	ExitUsage = 2 // a bad flag or an unreadable path
)

// Options is the replay's configuration, from flags.
type Options struct {
	StateDir   string
	Store      string // "", or dynamodb://TABLE
	Fresh      bool
	ASNDB      string
	Inventory  []string // files, or folders of .json files
	IPRanges   string
	Format     string
	Account    string // the security account importing the findings (AwsAccountId)
	Region     string
	Progress   time.Duration
	Window     time.Duration // reorder window, event time
	Parallel   int           // goroutines: 1 reads and decides in turn; 2 or more read beside deciding
	Shards     int           // detectors deciding beside the reading, each for its accounts (0: half of Parallel)
	CPUProfile string
	MemProfile string
	Config     detect.Config
	Paths      []string
}

// Main runs `outsider replay ARGS...` and returns the exit code.
func Main(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	opts, err := parseFlags(args, stdout)
	if errors.Is(err, flag.ErrHelp) {
		return ExitOK
	}
	if err != nil {
		PrintError(stderr, "outsider replay", err)
		fmt.Fprintln(stderr, "outsider replay: run 'outsider replay -h' for its flags")
		return ExitUsage
	}
	code, err := Run(context.Background(), opts, stdin, stdout, stderr)
	if err != nil {
		PrintError(stderr, "outsider replay", err)
	}
	return code
}

// PrintError writes err once, every line of it (a joined error has one a cause) after
// the prefix.
func PrintError(w io.Writer, prefix string, err error) {
	for line := range strings.SplitSeq(strings.TrimRight(err.Error(), "\n"), "\n") {
		fmt.Fprintf(w, "%s: %s\n", prefix, line)
	}
}

func parseFlags(args []string, stdout io.Writer) (Options, error) {
	fs := flag.NewFlagSet("replay", flag.ContinueOnError)
	// The flag package would print its error and the usage to stderr, and Main the error
	// again: errors are Main's to say, once; -h prints the usage on stdout.
	fs.SetOutput(io.Discard)
	cfg := detect.Default()
	o := Options{Config: cfg}
	fs.StringVar(&o.StateDir, "state", ".outsider", "directory of the embedded state store; consecutive replays continue from it")
	fs.BoolVar(&o.Fresh, "fresh", false, "start from empty state (the local store only)")
	fs.StringVar(&o.Store, "store", "", "dynamodb://TABLE: keep state in the deployed table instead (a backfill); AWS credentials and region from the environment")
	fs.BoolVar(&o.Config.CrossRegion, "cross-region", false, "also raise \"Usage of AWS Lambda's token from another AWS region\" (beyond the five titles; off by default)")
	fs.BoolVar(&o.Config.TrainOnly, "no-findings", false, "only learn baselines: raise no finding (a backfill before going live)")
	fs.StringVar(&o.ASNDB, "asn-db", "", "ASN database: MaxMind format (GeoLite2-ASN, GeoIP2-ISP), or comma-separated start,end,asn,org range tables (.csv or .csv.gz); without one the known-ASN title never matches")
	fs.Func("inventory", "the JSON that 'aws lambda list-functions' prints (functions and their roles): a file, or a folder of them; repeat for several", func(v string) error {
		o.Inventory = append(o.Inventory, v)
		return nil
	})
	fs.StringVar(&o.IPRanges, "ip-ranges", "", "AWS ip-ranges.json to use instead of the embedded snapshot (must not be older)")
	members := fs.String("member-accounts", "", "comma-separated account ids of your organisation: a VPC endpoint one of them owns is inside (every account whose own trail is replayed is, from its first record)")
	trusted := fs.String("trusted-cidrs", "", "comma-separated CIDRs of your own networks (office, VPN): calls from them are not outside")
	activation := fs.String("activation", "14d", "activation period: no finding for an account observed for less")
	training := fs.String("training", "30d", "training period: baselines count what was seen this recently")
	dedup := fs.String("dedup", "7d", "deduplication period: one finding per account, subject and title")
	severity := fs.String("severity", "", "severities by title code, e.g. cli=CRITICAL,remote=LOW (codes: "+detect.TitleCodes()+")")
	fs.StringVar(&o.Format, "format", "", "json (one ASFF finding a line; the default when stdout is not a terminal), text (a table), or email (the email of each new finding)")
	fs.StringVar(&o.Account, "security-account", "", "account id that imports the findings (ASFF AwsAccountId); default: the affected account")
	fs.StringVar(&o.Region, "region", "", "Security Hub region of the findings; default: the function's region")
	fs.DurationVar(&o.Progress, "progress", 2*time.Second, "how often to report progress on stderr (0: never)")
	fs.DurationVar(&o.Window, "reorder-window", 30*time.Minute, "event time over which records are put back in order (log files hold a few minutes each, and regions interleave); an NDJSON file whose time goes back by more is read as segments merged by time; 0s: as read")
	fs.IntVar(&o.Parallel, "parallel", runtime.NumCPU(), "1: read and decide in turn; 2 or more: read, decompress and parse beside the decisions (the same findings)")
	fs.IntVar(&o.Shards, "shards", 0, "with --parallel 2 or more: detectors deciding beside the reading, each for the accounts that hash to it (the same findings); default: half of --parallel")
	fs.BoolVar(&o.Config.PresignedFindings, "presigned-findings", false, "make presigned-URL uses of a function's token from outside findings of their own (the Lambda: OUTSIDER_PRESIGNED_FINDINGS, CDK context presignedFindings)")
	fs.StringVar(&o.CPUProfile, "cpuprofile", "", "write a CPU profile of the run to this file (diagnostics)")
	fs.StringVar(&o.MemProfile, "memprofile", "", "write a heap profile of the run's end, before the state is written, to this file (diagnostics)")
	fs.Usage = func() {}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprintf(stdout, "Usage: outsider replay [flags] PATH...\n\n"+
				"Reads CloudTrail records (EventBridge events, S3 log files {\"Records\":[...]} plain or .gz,\n"+
				"JSON arrays, NDJSON) from files, directories (walked in name order) or - (stdin),\n"+
				"and prints a finding each time one is created or changes.\n\nFlags:\n")
			fs.SetOutput(stdout)
			fs.PrintDefaults()
		}
		return o, err
	}
	var errs []error
	for _, p := range []struct {
		name string
		val  string
		dst  *time.Duration
	}{{"activation", *activation, &o.Config.Activation}, {"training", *training, &o.Config.Training}, {"dedup", *dedup, &o.Config.Dedup}} {
		d, err := detect.ParseDuration(p.val)
		if err != nil {
			errs = append(errs, fmt.Errorf("--%s: %w", p.name, err))
		}
		*p.dst = d
	}
	if *trusted != "" {
		cidrs, err := detect.ParseCIDRs(*trusted)
		if err != nil {
			errs = append(errs, fmt.Errorf("--trusted-cidrs: %w", err))
		}
		o.Config.Trusted = cidrs
	}
	if *members != "" {
		accts, err := detect.ParseAccounts(*members)
		if err != nil {
			errs = append(errs, fmt.Errorf("--member-accounts: %w", err))
		}
		o.Config.Members = accts
	}
	if *severity != "" {
		if err := o.Config.ParseSeverities(*severity); err != nil {
			errs = append(errs, fmt.Errorf("--severity: %w", err))
		}
	}
	switch o.Format {
	case "", "json", "text", "email":
	default:
		errs = append(errs, fmt.Errorf("--format: %q is not json, text or email", o.Format))
	}
	if o.Account != "" && !awsid.IsAccountID(o.Account) {
		errs = append(errs, fmt.Errorf("--security-account: %q is not a 12-digit account id", o.Account))
	}
	if o.Store != "" {
		if t, ok := strings.CutPrefix(o.Store, "dynamodb://"); !ok || t == "" || strings.Contains(t, "/") {
			errs = append(errs, fmt.Errorf("--store: %q is not dynamodb://TABLE", o.Store))
		} else if o.Fresh {
			errs = append(errs, errors.New("--fresh empties the local store only: it cannot go with --store"))
		}
	}
	if o.Window < 0 {
		errs = append(errs, fmt.Errorf("--reorder-window: %s is negative", o.Window))
	}
	if err := o.Config.Validate(); err != nil && len(errs) == 0 {
		errs = append(errs, err)
	}
	o.Paths = fs.Args() // stdin is read once, however often it is named (collect)
	if len(o.Paths) == 0 {
		errs = append(errs, errors.New("no PATH given (a file, a directory, or - for stdin)"))
	}
	for _, p := range o.Paths {
		if p == "-" {
			continue
		}
		if _, err := os.Stat(p); err != nil {
			errs = append(errs, fmt.Errorf("cannot read %s: %w", p, unwrapPath(err)))
		}
	}
	if o.Format == "" {
		o.Format = "json"
		if f, ok := stdout.(*os.File); ok {
			if st, err := f.Stat(); err == nil && st.Mode()&os.ModeCharDevice != 0 {
				o.Format = "text"
			}
		}
	}
	return o, errors.Join(errs...)
}

func unwrapPath(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// Run replays o.Paths. It returns ExitUsage for input that cannot be opened, ExitError
// when the run failed part way.
func Run(ctx context.Context, o Options, stdin io.Reader, stdout, stderr io.Writer) (int, error) {
	var ranges rangeLookup
	if o.IPRanges == "" {
		ranges = soonEmbedded()
	} else {
		r, err := rangesFrom(o.IPRanges)
		if err != nil {
			return ExitUsage, err
		}
		ranges = r
	}
	var asns *asn.DB
	if o.ASNDB != "" {
		db, err := asn.OpenAny(o.ASNDB)
		if err != nil {
			return ExitUsage, fmt.Errorf("--asn-db: %w", err)
		}
		defer db.Close()
		asns = db
	}
	inv, err := readInventory(o.Inventory)
	if err != nil {
		return ExitUsage, err
	}
	st, closeStore, err := openStore(ctx, o)
	if err != nil {
		return ExitUsage, err
	}
	defer closeStore() // on early returns; the normal end checks its error

	newDetector := func() (*detect.Detector, error) {
		det, err := detect.New(o.Config, st, ranges, asns)
		if err != nil {
			return nil, err
		}
		det.SetInventory(inv)
		if _, ok := st.(*store.Bolt); ok {
			// The store forgets what expired a day before the reorder window's reach
			// (run.forget, from a batch's first event time); the detector, from the
			// newest it decided, an hour more (a batch's length): never ahead of the store.
			det.SetForget(o.Window + 25*time.Hour)
		}
		return det, nil
	}
	det, err := newDetector()
	if err != nil {
		return ExitUsage, err
	}

	if o.CPUProfile != "" {
		f, err := os.Create(o.CPUProfile)
		if err != nil {
			return ExitUsage, fmt.Errorf("--cpuprofile: %w", err)
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return ExitUsage, fmt.Errorf("--cpuprofile: %w", err)
		}
		defer pprof.StopCPUProfile()
	}
	// The replay holds little live memory (the reorder window, caches bounded by event
	// time, 25–45 MB on a dense history of 400 accounts): collecting rarely is much of a
	// core's worth of speed, and a soft limit of 72 MiB on the runtime's memory keeps the
	// process near 100 MB with the state file's pages. At 64 MiB the collector ran nearly
	// without pause on dense histories (a trail folder: 12.2 s against 9.2 s here). A
	// history that holds more (thousands of accounts) has it raised to keep the collector
	// headroom (limiter).
	var limit *limiter
	if os.Getenv("GOGC") == "" && os.Getenv("GOMEMLIMIT") == "" {
		defer debug.SetGCPercent(debug.SetGCPercent(400))
		defer debug.SetMemoryLimit(debug.SetMemoryLimit(-1)) // runs last: the caller's limit back
		limit = startLimiter(memoryLimit(0))
		defer limit.close()
	}
	out := newPrinter(o, stdout, st)
	// The state is written and findings printed every 64,000 records (a dense history of quiet
	// accounts is small batches: each ends at an hour of event time), and at the end; with
	// a detector beside the reading, the embedded store's commits and the printing are
	// done beside the decisions (behind.go).
	var (
		flushStore detect.Store = st
		sink       flow.Sink    = out
		behind     *writeBehind
	)
	if _, ok := st.(*store.Bolt); ok && o.Parallel > 1 {
		behind = newWriteBehind()
		defer behind.close() // a run that failed: its queued writes are done, not lost
		flushStore, sink = behindStore{st, behind}, behindSink{out, behind}
	}
	mk := func(d *detect.Detector) *flow.Flow {
		return &flow.Flow{Detector: d, Store: flushStore, Sink: sink, EveryRecords: writeEvery}
	}
	run := &runner{flow: mk(det), crossRegion: o.Config.CrossRegion, ro: newReorder(o.Window), stderr: stderr, every: o.Progress, start: time.Now(), last: time.Now(),
		batch: &flow.Input{ID: "replay"}}
	if b, ok := st.(*store.Bolt); ok {
		// What expired a day before the reorder window's reach is asked about by no later
		// decision: the embedded store need not write it.
		run.forget = func(t time.Time) { b.Forget(t.Add(-o.Window - 24*time.Hour)) }
	}
	inputs, digests, err := collect(o.Paths)
	run.digests, run.activation = digests, o.Config.Activation
	if err == nil {
		inputs = segmented(inputs, o.Window, openFilesRoom(), func(format string, a ...any) {
			fmt.Fprintf(stderr, "outsider replay: "+format+"\n", a...)
		})
		_, plain := splitInputs(inputs)
		streams := streamsOf(plain)
		if streams > openFilesRoom() && o.Window > 0 {
			// Too many to read side by side: the gzipped ones that follow one another
			// are chained too, at the price of inflating each once more.
			inputs = spanGzipped(inputs, o.Window, o.Parallel)
			_, plain = splitInputs(inputs)
			streams = streamsOf(plain)
		}
		err = openFilesFor(streams)
		if limit != nil {
			limit.setBase(memoryLimit(streams))
		}
	}
	if err != nil {
		return exitFor(err), err
	}
	if n := o.Shards; o.Parallel > 1 {
		// Decisions beside the reading: one detector, or a shard of the accounts each,
		// half the cores deciding and the others reading. On two vCPUs, one detector
		// beside the reading, with a few batches in flight (detectorDepth), was fastest
		// on every form of the dense history (2026-12-07, fastest of two or three: a file
		// per account 2.5 s against 2.8 s with one batch in flight; a sorted file 1.78 s
		// against 2.01 s and a trail folder 4.37 s against 4.66 s with the detector on the
		// merge's own goroutine).
		if n <= 0 {
			n = max(1, o.Parallel/2)
		}
		sh, err := newShards(n, newDetector, mk)
		if err != nil {
			return ExitUsage, err
		}
		run.shards = sh
		defer sh.start(ctx)()
	}
	if err := run.merge(ctx, inputs, stdin, max(1, o.Parallel)); err != nil {
		return exitFor(err), err
	}
	if o.MemProfile != "" {
		if err := writeHeapProfile(o.MemProfile); err != nil {
			return ExitError, err
		}
	}
	if err := run.drain(ctx); err != nil {
		return ExitError, err
	}
	if behind != nil {
		if err := behind.close(); err != nil {
			return ExitError, err
		}
	}
	if err := out.close(); err != nil {
		return ExitError, err
	}
	if err := closeStore(); err != nil {
		return ExitError, err
	}
	run.report(true)
	return ExitOK, nil
}

// readInventory reads every inventory file named, and the .json files of every folder.
func readInventory(paths []string) ([]detect.InventoryFunction, error) {
	var files []string
	for _, p := range paths {
		st, err := os.Stat(p)
		if err != nil {
			return nil, fmt.Errorf("--inventory: cannot read %s: %w", p, unwrapPath(err))
		}
		if !st.IsDir() {
			files = append(files, p)
			continue
		}
		in, err := filepath.Glob(filepath.Join(p, "*.json"))
		if err != nil || len(in) == 0 {
			return nil, fmt.Errorf("--inventory: %s holds no .json file", p)
		}
		files = append(files, in...)
	}
	var inv []detect.InventoryFunction
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, fmt.Errorf("--inventory: cannot read %s: %w", f, unwrapPath(err))
		}
		fns, err := detect.ParseInventory(b)
		if err != nil {
			return nil, fmt.Errorf("--inventory %s: %w", f, err)
		}
		inv = append(inv, fns...)
	}
	return inv, nil
}

func openStore(ctx context.Context, o Options) (detect.Store, func() error, error) {
	if table, ok := strings.CutPrefix(o.Store, "dynamodb://"); ok {
		cfg, err := awsconfig.LoadDefaultConfig(ctx)
		if err != nil {
			return nil, nil, fmt.Errorf("--store: aws config: %w", err)
		}
		db := dynamodb.NewFromConfig(cfg)
		if _, err := db.DescribeTable(ctx, &dynamodb.DescribeTableInput{TableName: &table}); err != nil {
			return nil, nil, fmt.Errorf("--store: table %s: %w", table, err)
		}
		st := dynamo.New(db, table)
		return st, func() error { return st.Flush(ctx) }, nil
	}
	b, err := store.OpenBolt(o.StateDir, o.Fresh)
	if err != nil {
		return nil, nil, fmt.Errorf("--state: %w", err)
	}
	var once sync.Once
	var cerr error
	return b, func() error { once.Do(func() { cerr = b.Close() }); return cerr }, nil
}

func writeHeapProfile(path string) error {
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("--memprofile: %w", err)
	}
	runtime.GC()
	if err := pprof.Lookup("heap").WriteTo(f, 0); err != nil {
		f.Close()
		return fmt.Errorf("--memprofile: %w", err)
	}
	return f.Close()
}

type usageError struct{ error }

func exitFor(err error) int {
	var u usageError
	if errors.As(err, &u) {
		return ExitUsage
	}
	return ExitError
}

// runner puts records back in order and runs them through the flow in batches.
type runner struct {
	flow        *flow.Flow
	crossRegion bool
	ro          *reorder
	batch       *flow.Input // records taken out of the reorder window, not yet decided
	sum         flow.Summary
	files       int
	read        int // records read
	stderr      io.Writer
	every       time.Duration
	start, last time.Time
	current     string
	shards      *shards             // nil: flow decides alone
	forget      func(time.Time)     // the local store's Forget: the batch's first event time
	digests     int                 // CloudTrail digest files skipped
	dayDigests  atomic.Int64        // and those of the day folders, counted as they are listed
	badFiles    map[string][]string // by reason, the first files that held such values
	lateFiles   []string            // the first inputs whose records came behind the window
	activation  time.Duration
}

// badFilesShown is how many files the summary names per reason of skipped values.
const badFilesShown = 3

// writeEvery is how many records are decided between two writes of the state (tests
// vary it: what a run concludes must not depend on it).
var writeEvery = 64000

// Batches hold at most batchRecords records and an hour of event time: a theft of ten
// thousand calls is a handful of lines, and the last line of an Id is its final state.
const batchRecords = 1000

func (r *runner) process(ctx context.Context, rec *cloudtrail.Record) error {
	b := r.batch
	// A batch ends between two seconds, never inside one: within a second, what teaches
	// is decided before what it explains (flow.Run), whatever the input's order.
	if n := len(b.Records); n > 0 && (n >= batchRecords || rec.Time.Sub(b.Records[0].Time) >= time.Hour) &&
		rec.Time.Unix() != b.Records[n-1].Time.Unix() {
		if err := r.decide(ctx, false); err != nil {
			return err
		}
	}
	b.Records = append(b.Records, rec)
	if r.every > 0 && r.read%4096 == 0 && time.Since(r.last) >= r.every {
		r.report(false)
		r.last = time.Now()
	}
	return nil
}

// decide runs the batch through the flow; last writes everything.
func (r *runner) decide(ctx context.Context, last bool) error {
	run := r.flow.Run
	if last {
		run = r.flow.Finish
	}
	b := r.batch
	if r.forget != nil && len(b.Records) > 0 {
		r.forget(b.Records[0].Time)
	}
	if sh := r.shards; sh != nil {
		sum, err := sh.wait(sh.depth - 1) // room for this one
		r.sum.Add(sum)
		if err != nil {
			return err
		}
		sh.send(b.Records, last)
		if last {
			sum, err := sh.wait(0)
			r.sum.Add(sum)
			if err != nil {
				return err
			}
		}
	} else {
		r.sum.Add(run(ctx, []*flow.Input{b}))
		if b.Err != nil {
			return b.Err
		}
		// Decided: the flow and the detector keep none of them.
		cloudtrail.Recycle(b.Records)
	}
	clear(b.Records)
	b.Records, b.Malformed = b.Records[:0], b.Malformed[:0]
	return nil
}

func (r *runner) drain(ctx context.Context) error {
	for {
		rec, ok := r.ro.pop()
		if !ok {
			break
		}
		if err := r.process(ctx, rec); err != nil {
			return err
		}
	}
	return r.decide(ctx, true)
}

// lateWhere names the first inputs whose records came late.
func lateWhere(files []string) string {
	if len(files) == 0 {
		return ""
	}
	names := slices.Clone(files)
	for i, f := range names {
		if f == "-" {
			names[i] = "stdin"
		}
	}
	return " (in " + strings.Join(names, ", ") + ")"
}

// lateAdvice says how to give such a history. A plain file is read from each point where
// its time goes back (segments.go); a gzipped file or stdin cannot be read twice, so
// histories one after another in one of them are one stream. A trail's log files
// (gzipped, CloudTrail-named) come in the order of their names' times: the window is
// what to widen.
func lateAdvice(files []string) string {
	trail := len(files) > 0
	for _, f := range files {
		if _, named := namedInput(f, true); named {
			continue
		}
		trail = false
		if f == "-" || strings.HasSuffix(strings.ToLower(f), ".gz") {
			return "A gzipped file or stdin is read as it comes: write it to a plain file (gunzip it) and replay that, which is read from each point where its time goes back; or give each account's history as a file of its own, or widen --reorder-window"
		}
	}
	if trail {
		return "A trail's log files are read in the order of the times in their names: widen --reorder-window to the time a log file spans"
	}
	return "Sort the input, give each account's history as a file of its own, or widen --reorder-window"
}

func (r *runner) report(final bool) {
	el := time.Since(r.start)
	rate := float64(r.read) / max(el.Seconds(), 1e-9)
	if !final {
		fmt.Fprintf(r.stderr, "outsider replay: %d records, %.0f/s, reading %s\n", r.read, rate, r.current)
		return
	}
	st := r.flow.Detector.Stats
	if r.shards != nil {
		st = r.shards.stats()
	}
	say := func(format string, a ...any) { fmt.Fprintf(r.stderr, "outsider replay: "+format+"\n", a...) }
	say("%d files, %d records read in %s (%.0f records/s)", r.files, r.read, el.Round(time.Millisecond), rate)
	cross := ""
	if r.crossRegion {
		cross = fmt.Sprintf(", %d from an AWS address in another region than the function's", st.CrossRegion)
	}
	say("%d calls from outside AWS, %d of them with a Lambda role's session%s; findings: %d created, %d updated", st.Outside, st.LambdaUsed, cross, st.Created, st.Updated)
	if st.Inactive > 0 {
		// The one reason a newcomer's history shows nothing: say it in words, with the
		// flag that includes them.
		say("%d of those calls raised no finding: they came in their account's first %s of records "+
			"(its activation period, when the detector only learns). Replay older history first, "+
			"or add --activation 0d to see them now", st.Inactive, days(r.activation))
	}
	if total := r.sum.MalformedTotal(); total > 0 {
		var bad []string
		for _, k := range slices.Sorted(maps.Keys(r.sum.Malformed)) {
			b := fmt.Sprintf("%s=%d", k, r.sum.Malformed[k])
			if fs := r.badFiles[k]; len(fs) > 0 {
				more := ""
				if r.sum.Malformed[k] > len(fs) && len(fs) == badFilesShown {
					more = ", …"
				}
				b += " in " + strings.Join(fs, ", ") + more
			}
			bad = append(bad, b)
		}
		say("%d malformed values skipped: %s", total, strings.Join(bad, "; "))
	}
	if r.ro.late > 0 {
		// Out of order beyond the window: each was decided as of its own time, on what
		// the records read before it taught; what came after it in the input, though
		// older, taught it nothing (a function's role, its account's activation).
		say("%d records came more than the reorder window (%s) behind records already decided%s, and were decided as they came: "+
			"findings on them may be missing. %s",
			r.ro.late, time.Duration(r.ro.window), lateWhere(r.lateFiles), lateAdvice(r.lateFiles))
	}
	if d := r.digests + int(r.dayDigests.Load()); d > 0 {
		say("%d CloudTrail digest files skipped (integrity hashes, no records)", d)
	}
}

// days says a duration in days when it is whole days.
func days(d time.Duration) string {
	if d%(24*time.Hour) == 0 {
		return fmt.Sprintf("%d days", d/(24*time.Hour))
	}
	return d.String()
}

// printer is the replay's sink: it writes findings as ASFF JSON lines or a text table, or
// the email of each finding not emailed yet, claimed in the state as the Lambda claims it.
type printer struct {
	mu     sync.Mutex     // shards publish side by side
	counts map[string]int // the calls each finding printed counted
	o      Options
	w      io.Writer
	tw     *tabwriter.Writer
	mail   *flow.Mailer
	rows   int
}

func newPrinter(o Options, w io.Writer, st detect.Store) *printer {
	p := &printer{o: o, w: w}
	switch o.Format {
	case "text":
		p.tw = tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	case "email":
		p.mail = &flow.Mailer{Store: st, Send: p.email, SendUpdate: p.emailUpdate}
	}
	return p
}

func (p *printer) product(f detect.Finding) asff.Product {
	pr := asff.Product{Partition: f.Partition, Account: p.o.Account, Region: p.o.Region}
	if pr.Account == "" {
		pr.Account = f.Account
	}
	if pr.Region == "" {
		pr.Region = f.Region
	}
	return pr
}

// Publish implements flow.Sink. A failure to write is the run's end.
func (p *printer) Publish(ctx context.Context, changes []detect.Change) (flow.Published, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	var pub flow.Published
	for _, c := range changes {
		if p.mail != nil {
			sent, err := p.mail.Mail(ctx, c.Finding)
			if err != nil {
				return pub, err
			}
			if sent {
				pub.Emails++
			}
			continue
		}
		if c.Again {
			continue // printed when it changed: a second replay over the same state prints nothing new
		}
		if n, ok := p.counts[c.Finding.ID]; ok && c.Finding.Count < n {
			// Two shards wrote this finding (a function's token used in its own account
			// and, chained, in another): the one that wrote first printed last. Its
			// calls are in the line already printed, which stays the last.
			continue
		}
		if p.counts == nil {
			p.counts = map[string]int{}
		}
		p.counts[c.Finding.ID] = c.Finding.Count
		if err := p.print(c); err != nil {
			return pub, err
		}
	}
	return pub, nil
}

func (p *printer) email(_ context.Context, f detect.Finding) error {
	p.rows++
	_, err := fmt.Fprintf(p.w, "Subject: %s\n\n%s\n%s\n", notify.Subject(f), notify.Body(f, p.product(f).Region, time.Now()), strings.Repeat("-", 72))
	return err
}

func (p *printer) emailUpdate(_ context.Context, f detect.Finding, keys, sources []string) error {
	p.rows++
	_, err := fmt.Fprintf(p.w, "Subject: %s\n\n%s\n%s\n", notify.UpdateSubject(f), notify.UpdateBody(f, keys, sources, p.product(f).Region, time.Now()), strings.Repeat("-", 72))
	return err
}

func (p *printer) print(c detect.Change) error {
	f := c.Finding
	if p.tw == nil {
		b, err := asff.JSON(asff.ForChange(c, p.product(f)))
		if err != nil {
			return fmt.Errorf("render finding %s: %w", f.ID, err)
		}
		_, err = p.w.Write(append(b, '\n'))
		return err
	}
	if p.rows == 0 {
		fmt.Fprintln(p.tw, "CHANGE\tLAST SEEN\tSEVERITY\tTITLE\tACCOUNT\tFUNCTION / ROLE\tFROM\tCALLS")
	}
	p.rows++
	change := "updated"
	if c.New {
		change = "new"
	}
	subject := f.Subject
	if f.SubjectKind == detect.SubjectRole {
		subject = "role/" + f.Subject
	}
	_, err := fmt.Fprintf(p.tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%d: %s\n", change, f.LastSeen.Format(time.RFC3339), f.Severity, f.Title,
		f.Account, subject, strings.Join(f.SourceIPs(), ","), f.Count, strings.Join(f.CallNames(), ","))
	return err
}

func (p *printer) close() error {
	if p.tw == nil {
		return nil
	}
	if p.rows == 0 {
		fmt.Fprintln(p.tw, "no new or changed findings")
	}
	return p.tw.Flush()
}

// rangeLookup is what the detector asks of AWS's ranges.
type rangeLookup interface {
	detect.RangeLookup
	detect.RegionLookup
}

// rangesFrom reads an ip-ranges.json given to replace the embedded snapshot: it must be
// plausible and not older.
func rangesFrom(path string) (*ipranges.Ranges, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("--ip-ranges: %w", err)
	}
	r, err := ipranges.Parse(b)
	if err == nil {
		err = r.Plausible(time.Now())
	}
	if err != nil {
		return nil, fmt.Errorf("--ip-ranges %s: %w", path, err)
	}
	emb := ipranges.Embedded()
	if err := ipranges.NewCurrent(emb).Update(r); err != nil {
		return nil, fmt.Errorf("--ip-ranges %s: %w (the embedded snapshot is from %s)", path, err, emb.CreateDate)
	}
	return r, nil
}

// laterRanges is the embedded snapshot, parsed beside the start of the reading: tens of
// milliseconds of every run, which a second core spends while the first reads and
// parses the first records; the first decision waits for it.
type laterRanges struct {
	r    atomic.Pointer[ipranges.Ranges]
	done chan struct{}
}

func soonEmbedded() *laterRanges {
	l := &laterRanges{done: make(chan struct{})}
	go func() {
		l.r.Store(ipranges.Embedded())
		close(l.done)
	}()
	return l
}

func (l *laterRanges) get() *ipranges.Ranges {
	if r := l.r.Load(); r != nil {
		return r
	}
	<-l.done
	return l.r.Load()
}

func (l *laterRanges) Contains(a netip.Addr) bool { return l.get().Contains(a) }
func (l *laterRanges) Region(a netip.Addr) string { return l.get().Region(a) }
