package store

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"
)

var bucket = []byte("outsider")

// Bolt is a Store in one bbolt file. Writes are gathered in memory and committed in
// batches: every batchSize writes, on Flush and on Close. Commits are not synced to the
// disk (Close syncs): one fsync per batch would cost more than the replay, and a commit
// survives the replay's process dying, which is what a replay needs (a finding printed once
// is not printed as new again). A crash of the machine loses at most what was written since
// the last sync, which a replay of the same files writes again. A replay that calls Forget
// also keeps items that expire within days of its event time in memory, not on disk, until
// they expire (then dropped) or Close writes them: a process that dies loses those hours of
// keys, which replaying its last files learns again.
type Bolt struct {
	mu       sync.RWMutex // readers share it: a replay's shards read side by side
	db       *bolt.DB
	pending  map[string]item
	horizon  time.Time // items that expire before it are not written (Forget)
	gathered int       // writes since the last commit
	ondisk   *keyFilter
	// flushing is held by Flush for its whole commit: one at a time. While it writes,
	// without mu, what it writes is inflight: read as if still gathered, so that reads
	// and writes go on beside the commit (a replay decides while the state is written).
	flushing sync.Mutex
	inflight map[string]item
	path     string // the file's, for Close's sync of its size
}

// batchSize bounds the writes gathered between commits. A replay flushes every few dozen
// batches; most of what it writes in between is a key's, expired long before the commit
// (Forget), so commits are few and small.
const batchSize = 50000

// ErrLocked means another process (another replay) has the state file open.
var ErrLocked = errors.New("store: the state file is in use by another process")

// OpenBolt opens (or creates) DIR/state.db. fresh empties it first.
func OpenBolt(dir string, fresh bool) (*Bolt, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("store: %w", err)
	}
	// The state decides what is known and what was reported: a folder others may write
	// lets them plant or swap it.
	st, err := os.Stat(dir)
	if err != nil {
		return nil, fmt.Errorf("store: %w", err)
	}
	if st.Mode().Perm()&0o022 != 0 && runtime.GOOS != "windows" {
		return nil, fmt.Errorf("store: %s is writable by its group or by others (mode %v): chmod go-w it, or choose another --state", dir, st.Mode().Perm())
	}
	path := filepath.Join(dir, "state.db")
	if fi, err := os.Lstat(path); err == nil && fi.Mode()&os.ModeSymlink != 0 {
		return nil, fmt.Errorf("store: %s is a symbolic link: refused (state is written there; remove the link)", path)
	}
	// Opening takes the file's lock: a fresh start empties the state only once no other
	// replay holds it. A symlink planted as state.db is not followed.
	// Growing the file is not synced either (NoGrowSync): bbolt truncated and fsynced it at
	// each of its growths, six a dense replay, each writing out everything the
	// unsynced commits had left (48 ms of a 1.3 s run, in its execution trace). Close
	// syncs the file and its size.
	opts := &bolt.Options{Timeout: time.Second, NoFreelistSync: true, NoSync: true, NoGrowSync: true, OpenFile: openNoFollow}
	db, err := bolt.Open(path, 0o600, opts)
	if err != nil {
		if errors.Is(err, bolterrors.ErrTimeout) {
			return nil, fmt.Errorf("%w: %s", ErrLocked, path)
		}
		return nil, fmt.Errorf("store: open %s: %w", path, err)
	}
	if fresh {
		// A new file, locked, renamed over the old one while its lock is held: deleting a
		// large state item by item takes seconds, and bbolt never gives a file's pages
		// back. A replay that opens the state meanwhile waits for the new file's lock.
		tmp := path + ".fresh"
		os.Remove(tmp)
		ndb, err := bolt.Open(tmp, 0o600, opts)
		if err == nil {
			if err = os.Rename(tmp, path); err != nil {
				ndb.Close()
			}
		}
		if err != nil {
			db.Close()
			return nil, fmt.Errorf("store: fresh %s: %w", path, err)
		}
		db.Close()
		db = ndb
	}
	if err := db.Update(func(tx *bolt.Tx) error {
		_, err := tx.CreateBucketIfNotExists(bucket)
		return err
	}); err != nil {
		db.Close()
		return nil, fmt.Errorf("store: %s: %w", path, err)
	}
	b := &Bolt{db: db, path: path, pending: map[string]item{}}
	if err := b.buildFilter(); err != nil {
		db.Close()
		return nil, fmt.Errorf("store: %s: %w", path, err)
	}
	return b, nil
}

// buildFilter builds the filter of the keys the file holds.
func (b *Bolt) buildFilter() error {
	return b.db.View(func(tx *bolt.Tx) error {
		bk := tx.Bucket(bucket)
		f := newKeyFilter(bk.Stats().KeyN)
		err := bk.ForEach(func(k, _ []byte) error {
			f.add(string(k))
			return nil
		})
		b.ondisk = f
		return err
	})
}

// Forget tells the store that no decision will ask about an item that expired before t
// (event time, given by a replay that decides in order): such items still gathered are
// dropped at the next commit instead of being written. A dense history's keys, their
// issuers and their sightings inside AWS, are most of a replay's writes and live hours.
func (b *Bolt) Forget(t time.Time) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if t.After(b.horizon) {
		b.horizon = t
	}
}

func (b *Bolt) lookup(key string) (item, bool, error) {
	if it, ok := b.pending[key]; ok {
		return it, true, nil
	}
	if it, ok := b.inflight[key]; ok {
		return it, true, nil
	}
	if !b.ondisk.mayHave(key) {
		return item{}, false, nil
	}
	var it item
	var found bool
	err := b.db.View(func(tx *bolt.Tx) error {
		v := tx.Bucket(bucket).Get([]byte(key))
		if v == nil {
			return nil
		}
		if len(v) < 8 {
			return fmt.Errorf("store: %q: damaged value", key)
		}
		found = true
		if ns := int64(binary.BigEndian.Uint64(v)); ns != 0 {
			it.expires = time.Unix(0, ns)
		}
		it.value = clone(v[8:])
		return nil
	})
	return it, found, err
}

// Get implements detect.Store.
func (b *Bolt) Get(_ context.Context, key string, now time.Time) ([]byte, bool, error) {
	b.mu.RLock()
	defer b.mu.RUnlock()
	it, ok, err := b.lookup(key)
	if err != nil || !ok || !it.live(now) {
		return nil, false, err
	}
	return clone(it.value), true, nil
}

// Put implements detect.Store.
func (b *Bolt) Put(_ context.Context, key string, value []byte, expires time.Time) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.put(key, item{value: clone(value), expires: expires})
}

// Claim implements detect.Store.
func (b *Bolt) Claim(_ context.Context, key string, value []byte, now, expires time.Time) (bool, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	it, ok, err := b.lookup(key)
	if err != nil {
		return false, err
	}
	if ok && it.live(now) {
		return false, nil
	}
	return true, b.put(key, item{value: clone(value), expires: expires})
}

// Swap implements detect.Store.
func (b *Bolt) Swap(_ context.Context, key string, old, value []byte, expires time.Time) (bool, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	it, ok, err := b.lookup(key)
	if err != nil {
		return false, err
	}
	if ok != (old != nil) || ok && string(it.value) != string(old) {
		return false, nil
	}
	return true, b.put(key, item{value: clone(value), expires: expires})
}

func (b *Bolt) put(key string, it item) error {
	b.pending[key] = it
	b.gathered++
	if b.inflight != nil {
		// A Flush is writing: a commit now could land before its older values of the
		// same keys. The next write after it commits.
		return nil
	}
	switch {
	case len(b.pending) >= 4*batchSize:
		return b.commit(true) // short-lived items too: memory is bounded
	case b.gathered >= batchSize:
		return b.commit(false)
	}
	return nil
}

// shortLived is how far past the horizon an item may expire and still be held in memory
// rather than written: once the horizon passes it, it is dropped unwritten.
const shortLived = 72 * time.Hour

// commit writes the gathered items, holding mu. Once Forget set a horizon, items that
// expired before it are dropped, and (unless all) items that expire soon after it are held
// for a later commit, which will likely find them expired: a replay's keys live hours, and
// writing each to the B-tree was most of its time on dense histories.
func (b *Bolt) commit(all bool) error {
	b.gathered = 0
	if len(b.pending) == 0 {
		return nil
	}
	batch := b.take(all)
	err := b.write(batch)
	return b.settle(batch, err)
}

// take moves the gathered items to write out of pending, and drops the expired ones.
func (b *Bolt) take(all bool) map[string]item {
	hold := time.Time{}
	if !all && !b.horizon.IsZero() {
		hold = b.horizon.Add(shortLived)
	}
	batch := map[string]item{}
	for k, it := range b.pending {
		if !it.expires.IsZero() {
			if it.expires.Before(b.horizon) {
				delete(b.pending, k)
				continue
			}
			if it.expires.Before(hold) {
				continue
			}
		}
		batch[k] = it
		delete(b.pending, k)
	}
	return batch
}

// write commits batch in one transaction.
func (b *Bolt) write(batch map[string]item) error {
	if len(batch) == 0 {
		return nil
	}
	err := b.db.Update(func(tx *bolt.Tx) error {
		bk := tx.Bucket(bucket)
		for k, it := range batch {
			v := make([]byte, 8+len(it.value))
			if !it.expires.IsZero() {
				binary.BigEndian.PutUint64(v, uint64(it.expires.UnixNano()))
			}
			copy(v[8:], it.value)
			if err := bk.Put([]byte(k), v); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("store: commit: %w", err)
	}
	return nil
}

// settle records, holding mu, what write did with batch: written, its keys are on disk;
// failed, nothing was written, and every item goes back to be gathered for the next
// commit, unless a newer value of its key was gathered meanwhile.
func (b *Bolt) settle(batch map[string]item, err error) error {
	if err != nil {
		for k, it := range batch {
			if _, newer := b.pending[k]; !newer {
				b.pending[k] = it
			}
		}
		return err
	}
	for k := range batch {
		b.ondisk.add(k)
	}
	if b.ondisk.full() {
		return b.buildFilter() // twice the keys it was built for: a larger one
	}
	return nil
}

// Flush implements detect.Store: it commits the gathered writes (but the short-lived ones
// a replay's horizon holds back: see commit). Reads and writes go on while it writes: what
// it writes is read from memory until it is on disk.
func (b *Bolt) Flush(context.Context) error {
	b.flushing.Lock()
	defer b.flushing.Unlock()
	b.mu.Lock()
	b.gathered = 0
	batch := b.take(false)
	b.inflight = batch
	b.mu.Unlock()
	if flushHook != nil {
		flushHook(b)
	}
	err := b.write(batch)
	b.mu.Lock()
	defer b.mu.Unlock()
	b.inflight = nil
	return b.settle(batch, err)
}

// flushHook, set by tests, runs while a Flush writes, without mu.
var flushHook func(*Bolt)

// Close commits, syncs and closes the file.
func (b *Bolt) Close() error {
	b.flushing.Lock()
	defer b.flushing.Unlock()
	b.mu.Lock()
	defer b.mu.Unlock()
	err := b.commit(true)
	if err == nil {
		err = b.sync()
	}
	return errors.Join(err, b.db.Close())
}

// sync writes the file and its size to the disk. bbolt's Sync is fdatasync, which ext3 and
// ext4 were seen not to wait on for a file's new size, and its growths were not synced
// (NoGrowSync): fsync has both. https://github.com/boltdb/bolt/issues/284
func (b *Bolt) sync() error {
	f, err := openNoFollow(b.path, os.O_RDONLY, 0)
	if err != nil {
		return b.db.Sync() // the data at least
	}
	defer f.Close()
	return f.Sync()
}
