package gen

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"time"
)

// TrailWriter writes records as a CloudTrail S3 folder does:
// AWSLogs/<account>/CloudTrail/<region>/<yyyy>/<mm>/<dd>/ with one gzipped
// {"Records":[...]} file per account, region and five minutes, named
// <account>_CloudTrail_<region>_<yyyymmddThhmmZ>_<unique>.json.gz for the end of its five
// minutes. Records must come in time order; a slot is written once time has moved past it.
type TrailWriter struct {
	// Slot is the time one file covers (default five minutes, CloudTrail's delivery
	// period for a busy account; a quiet account's files hold hours).
	Slot  time.Duration
	dir   string
	slots map[slot][][]byte
	n     int       // files written
	last  time.Time // the time of the last flush: slots are scanned once a minute of records
}

type slot struct {
	account, region string
	end             time.Time
}

// NewTrailWriter writes under dir.
func NewTrailWriter(dir string) *TrailWriter {
	return &TrailWriter{dir: dir, slots: map[slot][][]byte{}}
}

// Add takes one record (a JSON object).
func (w *TrailWriter) Add(rec []byte) error {
	var r struct {
		EventTime string `json:"eventTime"`
		Account   string `json:"recipientAccountId"`
		Region    string `json:"awsRegion"`
	}
	if err := json.Unmarshal(rec, &r); err != nil {
		return err
	}
	at, err := time.Parse(time.RFC3339, r.EventTime)
	if err != nil {
		return err
	}
	per := w.Slot
	if per <= 0 {
		per = 5 * time.Minute
	}
	k := slot{r.Account, r.Region, at.Truncate(per).Add(per)}
	w.slots[k] = append(w.slots[k], bytes.Clone(rec))
	if at.Sub(w.last) < time.Minute {
		return nil
	}
	w.last = at
	return w.flush(at.Add(-per - 5*time.Minute))
}

// Close writes what is left and returns the number of files written.
func (w *TrailWriter) Close() (int, error) {
	return w.n, w.flush(time.Date(9999, 1, 1, 0, 0, 0, 0, time.UTC))
}

// flush writes the slots that ended before t, oldest first.
func (w *TrailWriter) flush(t time.Time) error {
	var done []slot
	for k := range w.slots {
		if k.end.Before(t) {
			done = append(done, k)
		}
	}
	sort.Slice(done, func(i, j int) bool { return done[i].end.Before(done[j].end) })
	for _, k := range done {
		folder := filepath.Join(w.dir, "AWSLogs", k.account, "CloudTrail", k.region, k.end.Format("2006/01/02"))
		if err := os.MkdirAll(folder, 0o755); err != nil {
			return err
		}
		var buf bytes.Buffer
		zw := gzip.NewWriter(&buf)
		zw.Write([]byte(`{"Records":[`))
		zw.Write(bytes.Join(w.slots[k], []byte(",")))
		zw.Write([]byte(`]}`))
		if err := zw.Close(); err != nil {
			return err
		}
		w.n++
		name := fmt.Sprintf("%s_CloudTrail_%s_%s_%016X.json.gz", k.account, k.region, k.end.Format("20060102T1504Z"), w.n)
		if err := os.WriteFile(filepath.Join(folder, name), buf.Bytes(), 0o644); err != nil {
			return err
		}
		delete(w.slots, k)
	}
	return nil
}
