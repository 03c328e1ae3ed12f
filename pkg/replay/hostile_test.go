package replay

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/outsider-sec/outsider/internal/gen"
)

// TestHostileInput: files a team may be handed — or an attacker may plant — give the
// findings of the clean history, with what is not valid counted by reason, and never
// lose what is valid. One case per hostile shape.
func TestHostileInput(t *testing.T) {
	lines := history(t, 9, 4000, 40, time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC))
	var recs [][]byte
	for _, l := range lines {
		recs = append(recs, bytes.TrimRight(l, "\n"))
	}
	clean := bytes.Join(recs, []byte("\n"))
	want := replayRuns(t, []string{writeNDJSON(t, recs, t.TempDir())})

	write := func(t *testing.T, name string, b []byte) string {
		p := filepath.Join(t.TempDir(), name)
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	gz := func(b []byte) []byte {
		var buf bytes.Buffer
		zw := gzip.NewWriter(&buf)
		zw.Write(b)
		zw.Close()
		return buf.Bytes()
	}
	forged := func() []byte {
		var out [][]byte
		for i, r := range recs[:200] {
			e, err := gen.Envelope(r)
			if err != nil {
				t.Fatal(err)
			}
			var m map[string]any
			json.Unmarshal(e, &m)
			if i%2 == 0 {
				m["source"] = "custom.attacker"
			} else {
				m["account"] = "999999999999"
			}
			b, _ := json.Marshal(m)
			out = append(out, b)
		}
		return bytes.Join(out, []byte("\n"))
	}

	for _, tc := range []struct {
		name  string
		input func(t *testing.T) []string
		bad   map[string]int // malformed by reason
	}{
		{"byte order mark", func(t *testing.T) []string {
			return []string{write(t, "bom.ndjson", append([]byte("\ufeff"), clean...))}
		}, nil},
		{"junk on the first line", func(t *testing.T) []string {
			return []string{write(t, "junk.ndjson", append([]byte("#!/bin/sh rm -rf /\n"), clean...))}
		}, map[string]int{"not-json": 1}},
		{"a cut first record", func(t *testing.T) []string {
			return []string{write(t, "cut.ndjson", append(append(bytes.Clone(recs[0][:150]), '\n'), clean...))}
		}, map[string]int{"not-json": 1}},
		{"a cut log file", func(t *testing.T) []string {
			doc := append([]byte("{\"Records\":[\n"), bytes.Join(recs, []byte(",\n"))...)
			return []string{write(t, "cut.json.gz", gz(doc[:len(doc)-40]))}
		}, map[string]int{"not-json": 1}},
		{"a 70 MB line first", func(t *testing.T) []string {
			long := append(append([]byte(`{"eventName":"`), bytes.Repeat([]byte("A"), 70<<20)...), "\"}\n"...)
			return []string{write(t, "long.ndjson", append(long, clean...))}
		}, map[string]int{"too-long": 1}},
		{"a gzip bomb beside the history", func(t *testing.T) []string {
			dir := t.TempDir()
			os.WriteFile(filepath.Join(dir, "bomb.json.gz"), gz(make([]byte, 200<<20)), 0o644)
			os.WriteFile(filepath.Join(dir, "history.ndjson"), clean, 0o644)
			return []string{dir}
		}, map[string]int{"too-long": 1}},
		{"forged envelopes beside the history", func(t *testing.T) []string {
			dir := t.TempDir()
			os.WriteFile(filepath.Join(dir, "a-forged.ndjson"), forged(), 0o644)
			os.WriteFile(filepath.Join(dir, "history.ndjson"), clean, 0o644)
			return []string{dir}
		}, map[string]int{"forged": 200}},
		{"records dated 2000 and 9999", func(t *testing.T) []string {
			old := strings.Replace(string(recs[5]), `"eventTime":"2026-`, `"eventTime":"2000-`, 1)
			future := strings.Replace(string(recs[6]), `"eventTime":"2026-`, `"eventTime":"9999-`, 1)
			return []string{write(t, "dates.ndjson", append([]byte(old+"\n"+future+"\n"), clean...))}
		}, map[string]int{"time-out-of-range": 2}},
		{"a symlink given as the path", func(t *testing.T) []string {
			p := write(t, "h.ndjson", clean)
			link := filepath.Join(t.TempDir(), "link.ndjson")
			if err := os.Symlink(p, link); err != nil {
				t.Fatal(err)
			}
			return []string{link}
		}, nil},
		{"a symlink inside a folder", func(t *testing.T) []string {
			p := write(t, "h.ndjson", clean)
			dir := t.TempDir()
			if err := os.Symlink(p, filepath.Join(dir, "link.ndjson")); err != nil {
				t.Fatal(err)
			}
			return []string{dir}
		}, nil},
		{"an unreadable file in a folder", func(t *testing.T) []string {
			dir := t.TempDir()
			os.WriteFile(filepath.Join(dir, "history.ndjson"), clean, 0o644)
			if err := os.Symlink(filepath.Join(dir, "gone"), filepath.Join(dir, "a-dangling.json")); err != nil {
				t.Fatal(err)
			}
			return []string{dir}
		}, map[string]int{"unreadable-file": 1}},
		{"links to /dev/zero and to a FIFO inside a folder", func(t *testing.T) []string {
			dir := t.TempDir()
			os.WriteFile(filepath.Join(dir, "history.ndjson"), clean, 0o644)
			if err := os.Symlink("/dev/zero", filepath.Join(dir, "zero.json")); err != nil {
				t.Fatal(err)
			}
			fifo := filepath.Join(t.TempDir(), "fifo")
			if err := syscall.Mkfifo(fifo, 0o600); err != nil {
				t.Skip("no FIFOs here:", err)
			}
			if err := os.Symlink(fifo, filepath.Join(dir, "fifo.json")); err != nil {
				t.Fatal(err)
			}
			return []string{dir} // neither is followed: a device never ends, the FIFO never opens
		}, nil},
		{"two million bad lines, gzipped", func(t *testing.T) []string {
			dir := t.TempDir()
			os.WriteFile(filepath.Join(dir, "ones.json.gz"), gz(bytes.Repeat([]byte("1\n"), 2_000_000)), 0o644)
			os.WriteFile(filepath.Join(dir, "history.ndjson"), clean, 0o644)
			return []string{dir} // counted, not listed: memory stays flat
		}, map[string]int{"not-a-record": 2_000_000}},
		{"a FIFO, as process substitution gives", func(t *testing.T) []string {
			fifo := filepath.Join(t.TempDir(), "fifo")
			if err := syscall.Mkfifo(fifo, 0o600); err != nil {
				t.Skip("no FIFOs here:", err)
			}
			go func() {
				f, err := os.OpenFile(fifo, os.O_WRONLY, 0)
				if err != nil {
					return
				}
				f.Write(clean)
				f.Close()
			}()
			return []string{fifo}
		}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := tc.input(t)
			var stdout, stderr bytes.Buffer
			args := append([]string{"--fresh", "--state", t.TempDir(), "--format", "json", "--progress", "0", "--asn-db", "testdata/GeoLite2-ASN-Test.mmdb"}, in...)
			if code := Main(args, nil, &stdout, &stderr); code != ExitOK {
				t.Fatalf("exit %d: %s", code, stderr.String())
			}
			got := map[string]int{}
			if line := regexp.MustCompile(`malformed values skipped: .*`).FindString(stderr.String()); line != "" {
				for _, m := range regexp.MustCompile(`([a-z-]+)=(\d+)`).FindAllStringSubmatch(line, -1) {
					n, _ := strconv.Atoi(m[2])
					got[m[1]] = n
				}
			}
			wantBad := tc.bad
			if wantBad == nil {
				wantBad = map[string]int{}
			}
			if diff := cmp.Diff(wantBad, got); diff != "" {
				t.Errorf("malformed by reason (-want +got):\n%s\n%s", diff, stderr.String())
			}
			findings := map[string]bool{}
			for _, line := range bytes.Split(bytes.TrimSpace(stdout.Bytes()), []byte("\n")) {
				var f struct{ Id string }
				if json.Unmarshal(line, &f) == nil && f.Id != "" {
					findings[f.Id] = true
				}
			}
			for id := range want {
				if !findings[id] {
					t.Errorf("finding %s lost", id)
				}
			}
			if len(findings) > len(want) {
				t.Errorf("%d findings, the clean history has %d", len(findings), len(want))
			}
		})
	}
}

// TestHostilePaths: paths that would hang the replay or write where they should not are
// refused with a message: a device named on the command line, a state folder others may
// write, a state file planted as a symlink (its target stays untouched).
func TestHostilePaths(t *testing.T) {
	run := func(args ...string) (int, string) {
		var stdout, stderr bytes.Buffer
		code := Main(append([]string{"--progress", "0"}, args...), nil, &stdout, &stderr)
		return code, stderr.String()
	}
	history := filepath.Join(t.TempDir(), "h.ndjson")
	os.WriteFile(history, []byte("{}\n"), 0o644)

	if code, msg := run("--state", t.TempDir(), "/dev/zero"); code == ExitOK || !strings.Contains(msg, "/dev/zero") {
		t.Errorf("/dev/zero named on the command line: exit %d, %q", code, msg)
	}

	open := t.TempDir()
	if err := os.Chmod(open, 0o777); err != nil {
		t.Fatal(err)
	}
	if code, msg := run("--state", open, history); code == ExitOK || !strings.Contains(msg, "writable") {
		t.Errorf("a world-writable state folder: exit %d, %q", code, msg)
	}

	planted := t.TempDir()
	target := filepath.Join(t.TempDir(), "victim")
	os.WriteFile(target, []byte("precious"), 0o600)
	if err := os.Symlink(target, filepath.Join(planted, "state.db")); err != nil {
		t.Fatal(err)
	}
	if code, msg := run("--state", planted, history); code == ExitOK || !strings.Contains(msg, "symbolic link") {
		t.Errorf("a planted state.db link: exit %d, %q", code, msg)
	}
	if b, _ := os.ReadFile(target); string(b) != "precious" {
		t.Errorf("the link's target was written: %q", b)
	}
}
