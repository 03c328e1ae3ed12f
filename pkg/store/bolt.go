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
// the last sync, which a replay of the same files writes again.
type Bolt struct {
	mu      sync.Mutex
	db      *bolt.DB
	pending map[string]item
}

const batchSize = 2000

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
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second, NoFreelistSync: true, NoSync: true, OpenFile: openNoFollow})
	if err != nil {
		if errors.Is(err, bolterrors.ErrTimeout) {
			return nil, fmt.Errorf("%w: %s", ErrLocked, path)
		}
		return nil, fmt.Errorf("store: open %s: %w", path, err)
	}
	if err := db.Update(func(tx *bolt.Tx) error {
		if fresh {
			if err := tx.DeleteBucket(bucket); err != nil && !errors.Is(err, bolterrors.ErrBucketNotFound) {
				return err
			}
		}
		_, err := tx.CreateBucketIfNotExists(bucket)
		return err
	}); err != nil {
		db.Close()
		return nil, fmt.Errorf("store: %s: %w", path, err)
	}
	return &Bolt{db: db, pending: map[string]item{}}, nil
}

func (b *Bolt) lookup(key string) (item, bool, error) {
	if it, ok := b.pending[key]; ok {
		return it, true, nil
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
	b.mu.Lock()
	defer b.mu.Unlock()
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
	if len(b.pending) >= batchSize {
		return b.commit()
	}
	return nil
}

func (b *Bolt) commit() error {
	if len(b.pending) == 0 {
		return nil
	}
	err := b.db.Update(func(tx *bolt.Tx) error {
		bk := tx.Bucket(bucket)
		for k, it := range b.pending {
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
	clear(b.pending)
	return nil
}

// Flush implements detect.Store: it commits the gathered writes.
func (b *Bolt) Flush(context.Context) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.commit()
}

// Close commits, syncs and closes the file.
func (b *Bolt) Close() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	err := b.commit()
	if err == nil {
		err = b.db.Sync()
	}
	return errors.Join(err, b.db.Close())
}
