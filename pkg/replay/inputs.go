package replay

import (
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// input is one file to read, and the time CloudTrail's name gives it (zero: no such name).
type input struct {
	path    string
	t       time.Time
	regular bool     // a regular file (not a FIFO, a device or stdin): read whole when small
	day     bool     // a trail's day folder (…/YYYY/MM/DD), listed when its day comes (t: the day)
	dir     *heldDir // the listed folder it is opened from (nil: by its path)
	// A segment of a file whose event time goes back (segmented): its bytes from off to
	// end (0: the end of the file); part is its place in the file, 0 the first.
	off, end int64
	part     int
	span     span // when its records are, if known (segmentsOf): files that follow one another are chained
	src      int  // its place among the inputs read side by side (reorder.push; set by merge)
}

// open opens a regular input: from its listed folder when it has one.
func (in input) open() (io.ReadCloser, error) {
	if in.segment() {
		return in.openSegment()
	}
	if in.dir != nil {
		return in.dir.open(filepath.Base(in.path), in.path)
	}
	return openRaw(in.path)
}

// plainFile: a regular file named by its path, not by CloudTrail (a stream of its own
// unless chained): what segmented samples and spanGzipped inflates.
func (in input) plainFile() bool {
	return in.t.IsZero() && in.regular && in.path != "-" && in.dir == nil
}

// segment: the input is a part of a file (segmented).
func (in input) segment() bool { return in.off > 0 || in.end > 0 }

// openSegment opens a segment of a file.
func (in input) openSegment() (io.ReadCloser, error) {
	f, err := os.Open(in.path)
	if err != nil {
		return nil, err
	}
	n := in.end - in.off
	if in.end == 0 {
		n = 1<<63 - 1 - in.off
	}
	return struct {
		io.Reader
		io.Closer
	}{io.NewSectionReader(f, in.off, n), f}, nil
}

// dayFolder is a trail's …/YYYY/MM/DD folder: its date, ok false for another folder.
func dayFolder(path string) (time.Time, bool) {
	d, m, y := filepath.Base(path), filepath.Base(filepath.Dir(path)), filepath.Base(filepath.Dir(filepath.Dir(path)))
	if len(y) != 4 || len(m) != 2 || len(d) != 2 {
		return time.Time{}, false
	}
	t, err := time.Parse("2006/01/02", y+"/"+m+"/"+d)
	return t, err == nil
}

// CloudTrail names its log files
// <account>_CloudTrail_<region>_<yyyymmddThhmmZ>_<unique>.json.gz, the time being when the
// file was written, after its records.
// https://docs.aws.amazon.com/awscloudtrail/latest/userguide/get-and-view-cloudtrail-log-files.html
// logFileTime returns the time part of such a name, or false: it matches what
// ^\d{12}_CloudTrail_[a-z0-9-]+_(\d{8}T\d{4}Z)_[A-Za-z0-9]+\.json(\.gz)?$ matches (the
// tests hold it to that pattern), ten times faster, on each of a trail's files.
func logFileTime(name string) (string, bool) {
	rest, _ := strings.CutSuffix(name, ".gz")
	rest, ok := strings.CutSuffix(rest, ".json")
	if !ok || len(rest) < 12 || !all(rest[:12], isDigit) {
		return "", false
	}
	if rest, ok = strings.CutPrefix(rest[12:], "_CloudTrail_"); !ok {
		return "", false
	}
	region, rest, _ := strings.Cut(rest, "_")
	stamp, unique, _ := strings.Cut(rest, "_")
	okStamp := len(stamp) == 14 && all(stamp[:8], isDigit) && stamp[8] == 'T' && all(stamp[9:13], isDigit) && stamp[13] == 'Z'
	if region == "" || !all(region, func(c byte) bool { return c >= 'a' && c <= 'z' || isDigit(c) || c == '-' }) || !okStamp ||
		unique == "" || !all(unique, func(c byte) bool { return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || isDigit(c) }) {
		return "", false
	}
	return stamp, true
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

func all(s string, f func(byte) bool) bool {
	for i := range len(s) {
		if !f(s[i]) {
			return false
		}
	}
	return true
}

// isDigest reports whether a file is a CloudTrail digest file (the trail's integrity
// validation: hashes of the log files, no record), which every trail folder holds under
// CloudTrail-Digest/ and names <account>_CloudTrail-Digest_<region>_….json.gz.
// https://docs.aws.amazon.com/awscloudtrail/latest/userguide/cloudtrail-log-file-validation-digest-file-structure.html
func isDigest(path string) bool {
	return strings.Contains(filepath.Base(path), "_CloudTrail-Digest_")
}

// collect lists the files under paths: files whose name is CloudTrail's are ordered by the
// time in their name (a whole trail folder, every account and region, read in time order
// without loading it) and carry that time; other files follow, in the order given and
// walked. The merge reads the named files as one stream and every other file as a stream
// of its own, merged by event time. A
// symlink, a FIFO or a process substitution given as a path is read as the file it is.
//
// Digest files in a folder are skipped and counted.
//
// A trail's day folders (…/YYYY/MM/DD) are not listed here: each is an input marking its
// day, listed with the other folders of its day when the reading comes to it (list). An
// organisation trail is hundreds of thousands of files; their names, held all at once,
// were a third of a dense replay's memory.
func collect(paths []string) (inputs []input, digests int, err error) {
	var plain, named []input
	add := func(path string, regular bool) {
		if in, ok := namedInput(path, regular); ok {
			named = append(named, in)
			return
		}
		plain = append(plain, input{path: path, regular: regular})
	}
	for _, p := range paths {
		if p == "-" {
			if !slices.ContainsFunc(plain, func(in input) bool { return in.path == "-" }) {
				plain = append(plain, input{path: "-"}) // stdin is read once
			}
			continue
		}
		st, err := os.Stat(p) // follows a symlink
		if err != nil {
			return nil, 0, usageError{fmt.Errorf("cannot read %s: %w", p, unwrapPath(err))}
		}
		if !st.IsDir() {
			// Named on the command line: a file, or a pipe (a FIFO, a process
			// substitution). A device never ends (/dev/zero) or blocks (a tty).
			if !st.Mode().IsRegular() && st.Mode()&fs.ModeNamedPipe == 0 {
				return nil, 0, usageError{fmt.Errorf("cannot read %s: not a file, a folder or a pipe (%v)", p, st.Mode().Type())}
			}
			add(p, st.Mode().IsRegular())
			continue
		}
		err = filepath.WalkDir(p, func(path string, d fs.DirEntry, err error) error {
			if err != nil {
				if path == p {
					return usageError{fmt.Errorf("cannot read %s: %w", path, unwrapPath(err))}
				}
				// An unreadable folder inside: its files are reported when they fail.
				plain = append(plain, input{path: path})
				return filepath.SkipDir
			}
			if d.IsDir() {
				if path != p && strings.HasPrefix(d.Name(), ".") {
					return filepath.SkipDir
				}
				if t, ok := dayFolder(path); ok && path != p {
					named = append(named, input{path: path, t: t, day: true})
					return filepath.SkipDir
				}
				return nil
			}
			digests += walkFile(path, d, add)
			return nil
		})
		if err != nil {
			return nil, 0, err
		}
	}
	sortNamed(named)
	return append(plain, named...), digests, nil
}

// walkFile takes a file met in a folder: add is called for what is read; it returns 1
// for a digest file (skipped, counted).
func walkFile(path string, d fs.DirEntry, add func(path string, regular bool)) int {
	if strings.HasPrefix(d.Name(), ".") {
		return 0
	}
	if isDigest(path) {
		return 1
	}
	if d.Type()&fs.ModeSymlink != 0 {
		st, err := os.Stat(path)
		switch {
		case err != nil:
			add(path, false) // dangling: reported as unreadable
		case st.Mode().IsRegular():
			add(path, true) // a link to a file is read
		}
		// A link to a folder (loops), a FIFO or a device (/dev/zero never ends, a FIFO
		// may never open) inside a folder: not followed. A pipe is read only when named
		// on the command line.
		return 0
	}
	if d.Type().IsRegular() {
		add(path, true)
	}
	return 0
}

// namedInput is a file CloudTrail named, with its name's time.
func namedInput(path string, regular bool) (input, bool) {
	if stamp, ok := logFileTime(filepath.Base(path)); ok {
		if t, err := time.Parse("20060102T1504Z", stamp); err == nil {
			return input{path: path, t: t, regular: regular}, true
		}
	}
	return input{}, false
}

// sortNamed orders named inputs by their time, then name.
func sortNamed(named []input) {
	slices.SortStableFunc(named, func(a, b input) int {
		if c := a.t.Compare(b.t); c != 0 {
			return c
		}
		return strings.Compare(filepath.Base(a.path), filepath.Base(b.path))
	})
}

// listDays lists day folders (of one day): their files, CloudTrail's named ones in time
// order, then the others, in walk order, with the time of the day (read in the day's
// place). It returns the digest files it skipped.
func listDays(days []input, held *heldDirs) ([]input, int) {
	var named, other []input
	digests := 0
	add := func(day input, dir *heldDir) func(path string, regular bool) {
		return func(path string, regular bool) {
			in, ok := namedInput(path, regular)
			if !ok {
				in = input{path: path, t: day.t, regular: regular}
			}
			if dir != nil && regular {
				dir.add()
				in.dir = dir
			}
			if ok {
				named = append(named, in)
			} else {
				other = append(other, in)
			}
		}
	}
	for _, day := range days {
		// The day folder is listed, not walked: walking would first stat it again (the
		// walk of the tree met it already), one system call of tens of thousands.
		dir, entries, err := listDir(day.path, held)
		if err != nil {
			other = append(other, input{path: day.path, t: day.t}) // reported when it fails
			continue
		}
		addDay := add(day, dir)
		for _, e := range entries {
			path := filepath.Join(day.path, e.Name())
			if !e.IsDir() {
				digests += walkFile(path, e, addDay)
				continue
			}
			if strings.HasPrefix(e.Name(), ".") {
				continue
			}
			// A folder inside a day's (not CloudTrail's layout): walked, in name order.
			addDay := add(day, nil) // by their paths
			filepath.WalkDir(path, func(path string, d fs.DirEntry, err error) error {
				if err != nil {
					other = append(other, input{path: path, t: day.t}) // reported when it fails
					if d != nil && d.IsDir() {
						return filepath.SkipDir
					}
					return nil
				}
				if d.IsDir() {
					if strings.HasPrefix(d.Name(), ".") {
						return filepath.SkipDir
					}
					return nil
				}
				digests += walkFile(path, d, addDay)
				return nil
			})
		}
		if dir != nil {
			dir.done() // the listing's own count: closed once its files are opened
		}
	}
	sortNamed(named)
	return append(named, other...), digests
}
