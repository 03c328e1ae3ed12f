package replay

import (
	"bytes"
	"compress/gzip"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestListDirAsReadDir: the raw listing gives what os.ReadDir gives (the slow, obvious
// reference): the same names, in the same order, of the same types, past one buffer of
// entries.
func TestListDirAsReadDir(t *testing.T) {
	dir := t.TempDir()
	for i := range 1500 { // names of ~60 bytes: more than one 32 KiB getdents64 buffer
		name := fmt.Sprintf("123456789012_CloudTrail_eu-west-1_20260501T%02d%02dZ_%020d.json.gz", i/60%24, i%60, i)
		if err := os.WriteFile(filepath.Join(dir, name), nil, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Mkdir(filepath.Join(dir, "sub"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("sub", filepath.Join(dir, "link")); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mkfifo(filepath.Join(dir, "fifo"), 0o600); err != nil {
		t.Fatal(err)
	}
	want, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	h, got, err := listDir(dir, nil)
	if err != nil || h != nil {
		t.Fatalf("listDir: %v, held %v (none asked for)", err, h)
	}
	if len(got) != len(want) {
		t.Fatalf("%d entries, os.ReadDir %d", len(got), len(want))
	}
	for i := range want {
		if got[i].Name() != want[i].Name() || got[i].Type() != want[i].Type() || got[i].IsDir() != want[i].IsDir() {
			t.Fatalf("entry %d: %s %v, os.ReadDir %s %v", i, got[i].Name(), got[i].Type(), want[i].Name(), want[i].Type())
		}
	}
	if _, _, err := listDir(filepath.Join(dir, "missing"), nil); !strings.Contains(fmt.Sprint(err), "missing") {
		t.Errorf("a missing folder: %v", err)
	}
}

// openFDs counts the process's open descriptors.
func openFDs(t *testing.T) int {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skip("no /proc/self/fd")
	}
	return len(ents)
}

// TestHeldDirs: day folders kept open for their files are closed once each file was
// opened, or at the end of a run that stopped before; past maxHeldDirs, files are opened
// by their paths. The replay's findings do not depend on which.
func TestHeldDirs(t *testing.T) {
	var recs [][]byte
	base := time.Date(2026, 5, 1, 0, 0, 0, 0, time.UTC)
	for i := range 400 {
		at := base.Add(time.Duration(i) * 37 * time.Minute).Format(time.RFC3339)
		acct := fmt.Sprintf("1234567890%02d", i%7)
		recs = append(recs, []byte(fmt.Sprintf(`{"eventVersion":"1.08","userIdentity":{"type":"AssumedRole","principalID":"AROAX:s","arn":"arn:aws:sts::%s:assumed-role/r/s","accountId":"%s","accessKeyId":"ASIAX%03d"},"eventTime":%q,"eventSource":"s3.amazonaws.com","eventName":"ListBuckets","awsRegion":"eu-west-1","sourceIPAddress":"27.192.8.%d","userAgent":"ua","eventID":"e%d","recipientAccountId":"%s"}`,
			acct, acct, i, at, i%250, i, acct)))
	}
	trail := writeLogFiles(t, recs, t.TempDir())
	run := func() string {
		var out, errs bytes.Buffer
		if code := Main([]string{"--fresh", "--state", t.TempDir(), "--format", "json", "--progress", "0", "--parallel", "2", trail}, nil, &out, &errs); code != ExitOK {
			t.Fatalf("exit %d: %s", code, errs.String())
		}
		// What it read and concluded, without how long it took.
		return regexp.MustCompile(` in [^ ]+ \([0-9]+ records/s\)`).ReplaceAllString(errs.String(), "") + out.String()
	}
	before := openFDs(t)
	want := run()
	if !strings.Contains(want, "400 records read") {
		t.Fatalf("the trail was not read whole: %s", want)
	}
	if n := openFDs(t); n != before {
		t.Errorf("%d descriptors open after the run, %d before", n, before)
	}
	defer func(n int) { maxHeldDirs = n }(maxHeldDirs)
	maxHeldDirs = 2 // most folders' files opened by their paths
	if got := run(); got != want {
		t.Errorf("with at most two folders held:\n%s\nwant\n%s", got, want)
	}
	if n := openFDs(t); n != before {
		t.Errorf("%d descriptors open after the run, %d before", n, before)
	}

	// Listed, every folder is held until each of its files was opened.
	var days []input
	filepath.WalkDir(trail, func(path string, d fs.DirEntry, err error) error {
		if t, ok := dayFolder(path); ok && d.IsDir() {
			days = append(days, input{path: path, t: t, day: true})
		}
		return nil
	})
	maxHeldDirs = 4096
	held := &heldDirs{}
	ins, _ := listDays(days, held)
	if len(ins) == 0 || ins[0].dir == nil {
		t.Fatalf("%d files listed, the first not from its held folder", len(ins))
	}
	if openFDs(t) <= before {
		t.Error("no folder held open")
	}
	for _, in := range ins {
		f, err := in.open()
		if err != nil {
			t.Fatal(err)
		}
		if b, _ := io.ReadAll(f); len(b) == 0 {
			t.Errorf("%s opened from its folder read nothing", in.path)
		}
		f.Close()
	}
	if n := openFDs(t); n != before {
		t.Errorf("%d descriptors open once every file was opened, %d before", n, before)
	}

	// A run that stops before opening a held folder's files closes it all the same.
	ins, _ = listDays(days, held)
	if f, err := ins[0].open(); err == nil {
		f.Close()
	}
	held.closeAll()
	if n := openFDs(t); n != before {
		t.Errorf("%d descriptors open after closeAll, %d before", n, before)
	}
}

// TestHeldDirsOpenFileLimit: under a low open-file limit (a container's 1,024, here 64),
// the folders held stay within a quarter of it and every file is still opened: a replay
// holding a day's hundreds of folders would otherwise fail to open the files themselves.
func TestHeldDirsOpenFileLimit(t *testing.T) {
	var recs [][]byte
	base := time.Date(2026, 5, 1, 0, 0, 0, 0, time.UTC)
	for i := range 600 { // 300 accounts' folders on one day, two files each
		at := base.Add(time.Duration(i) * 2 * time.Minute).Format(time.RFC3339)
		acct := fmt.Sprintf("123456789%03d", i%300)
		recs = append(recs, []byte(fmt.Sprintf(`{"eventVersion":"1.08","userIdentity":{"type":"AssumedRole","principalID":"AROAX:s","arn":"arn:aws:sts::%s:assumed-role/r/s","accountId":"%s","accessKeyId":"ASIAX%03d"},"eventTime":%q,"eventSource":"s3.amazonaws.com","eventName":"ListBuckets","awsRegion":"eu-west-1","sourceIPAddress":"27.192.8.%d","userAgent":"ua","eventID":"e%d","recipientAccountId":"%s"}`,
			acct, acct, i, at, i%250, i, acct)))
	}
	trail := writeLogFiles(t, recs, t.TempDir())
	lowerFileLimit(t, 64)
	var out, errs bytes.Buffer
	code := Main([]string{"--fresh", "--state", t.TempDir(), "--format", "json", "--progress", "0", "--parallel", "2", trail}, nil, &out, &errs)
	if code != ExitOK || !strings.Contains(errs.String(), "600 records read") || strings.Contains(errs.String(), "cannot read") {
		t.Fatalf("exit %d under a limit of 64 open files:\n%s", code, errs.String())
	}
}

// TestTooManyInputsForTheLimit: more files read side by side than the open-file limit
// allows is a usage error that says what to do, not a replay that runs with some of its
// inputs missing.
func TestTooManyInputsForTheLimit(t *testing.T) {
	dir := t.TempDir()
	var files []string
	for i := range 100 {
		f := filepath.Join(dir, fmt.Sprintf("%03d.ndjson", i))
		// Within two minutes of each other: every file overlaps every other, so none
		// follows another (chained) and all are read side by side.
		line := fmt.Sprintf(`{"eventVersion":"1.08","eventTime":"2026-05-01T00:%02d:%02dZ","eventSource":"s3.amazonaws.com","eventName":"ListBuckets","awsRegion":"eu-west-1","sourceIPAddress":"s3.amazonaws.com","eventID":"e%d","recipientAccountId":"123456789%03d"}`+"\n", i/60, i%60, i, i)
		if err := os.WriteFile(f, []byte(line), 0o600); err != nil {
			t.Fatal(err)
		}
		files = append(files, f)
	}
	run := func() (int, string) {
		var out, errs bytes.Buffer
		code := Main(append([]string{"--fresh", "--state", t.TempDir(), "--progress", "0"}, files...), nil, &out, &errs)
		return code, errs.String()
	}
	if code, errs := run(); code != ExitOK || !strings.Contains(errs, "100 records read") {
		t.Fatalf("exit %d: %s", code, errs)
	}
	lowerFileLimit(t, 128)
	if code, errs := run(); code != ExitUsage || !strings.Contains(errs, "100 inputs are read side by side") || !strings.Contains(errs, "ulimit -n") {
		t.Fatalf("100 files under a limit of 128 open files: exit %d: %s", code, errs)
	}
}

// TestChainedUnderTheLimit: files that follow one another in time are read one after
// another, as one stream: a year of daily files of three accounts is three open files at a
// time, and runs under a limit far below the number of files.
func TestChainedUnderTheLimit(t *testing.T) {
	dir, gzDir := t.TempDir(), t.TempDir()
	base := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC) // a year in the past
	var files []string
	for day := range 365 {
		for a := range 3 {
			f := filepath.Join(dir, fmt.Sprintf("123456789%03d", a), base.AddDate(0, 0, day).Format("2006-01-02")+".ndjson")
			if err := os.MkdirAll(filepath.Dir(f), 0o700); err != nil {
				t.Fatal(err)
			}
			var b bytes.Buffer
			for h := 2; h < 22; h += 4 {
				at := base.AddDate(0, 0, day).Add(time.Duration(h) * time.Hour).Format(time.RFC3339)
				fmt.Fprintf(&b, `{"eventVersion":"1.08","eventTime":%q,"eventSource":"s3.amazonaws.com","eventName":"ListBuckets","awsRegion":"eu-west-1","sourceIPAddress":"s3.amazonaws.com","eventID":"e%d-%d-%d","recipientAccountId":"123456789%03d"}`+"\n", at, day, a, h, a)
			}
			if err := os.WriteFile(f, b.Bytes(), 0o600); err != nil {
				t.Fatal(err)
			}
			files = append(files, f)
			// The same gzipped, in a folder of its own.
			var gz bytes.Buffer
			zw := gzip.NewWriter(&gz)
			zw.Write(b.Bytes())
			zw.Close()
			fz := filepath.Join(gzDir, filepath.Base(filepath.Dir(f)), filepath.Base(f)+".gz")
			if err := os.MkdirAll(filepath.Dir(fz), 0o700); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(fz, gz.Bytes(), 0o600); err != nil {
				t.Fatal(err)
			}
		}
	}
	var ins []input
	for _, f := range files {
		ins = append(ins, input{path: f, regular: true})
	}
	ins = segmented(ins, 30*time.Minute, 1<<30, func(string, ...any) { t.Fatal("said something") })
	if n := len(chained(numbered(ins, 1))); n != 3 {
		t.Fatalf("%d files of three accounts, a day each: %d streams, want 3", len(files), n)
	}
	lowerFileLimit(t, 128)
	// Gzipped, their spans are read by inflating them, since they would not fit.
	for _, d := range []string{dir, gzDir} {
		var out, errs bytes.Buffer
		if code := Main([]string{"--fresh", "--state", t.TempDir(), "--format", "json", "--progress", "0", "--parallel", "1", d}, nil, &out, &errs); code != ExitOK ||
			!strings.Contains(errs.String(), fmt.Sprintf("%d files, %d records read", len(files), len(files)*5)) || strings.Contains(errs.String(), "came more than") {
			t.Fatalf("exit %d under a limit of 128 open files: %s", code, errs.String())
		}
	}
}

// lowerFileLimit sets the process's open-file limit to n for the rest of the test.
func lowerFileLimit(t *testing.T, n uint64) {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		t.Skip(err)
	}
	low := lim
	low.Cur = n
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &low); err != nil {
		t.Skip(err)
	}
	t.Cleanup(func() { syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim) })
}
