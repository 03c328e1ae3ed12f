// Package store holds the detector's state outside DynamoDB: in memory (the reference
// model, and tests), and in an embedded bbolt file so that consecutive local replays go on
// where the last one stopped.
package store

import (
	"context"
	"sync"
	"time"
)

type item struct {
	value   []byte
	expires time.Time // zero: never
}

func (it item) live(now time.Time) bool { return it.expires.IsZero() || it.expires.After(now) }

// Memory is a Store in a map: the reference the other stores are tested against.
type Memory struct {
	mu    sync.Mutex
	items map[string]item
}

// NewMemory returns an empty in-memory store.
func NewMemory() *Memory { return &Memory{items: map[string]item{}} }

// Get implements detect.Store.
func (m *Memory) Get(_ context.Context, key string, now time.Time) ([]byte, bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	it, ok := m.items[key]
	if !ok || !it.live(now) {
		return nil, false, nil
	}
	return clone(it.value), true, nil
}

// Put implements detect.Store.
func (m *Memory) Put(_ context.Context, key string, value []byte, expires time.Time) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.items[key] = item{value: clone(value), expires: expires}
	return nil
}

// Claim implements detect.Store.
func (m *Memory) Claim(_ context.Context, key string, value []byte, now, expires time.Time) (bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if it, ok := m.items[key]; ok && it.live(now) {
		return false, nil
	}
	m.items[key] = item{value: clone(value), expires: expires}
	return true, nil
}

// Swap implements detect.Store.
func (m *Memory) Swap(_ context.Context, key string, old, value []byte, expires time.Time) (bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	it, ok := m.items[key]
	if ok != (old != nil) || ok && string(it.value) != string(old) {
		return false, nil
	}
	m.items[key] = item{value: clone(value), expires: expires}
	return true, nil
}

// Flush implements detect.Store: a map gathers nothing.
func (m *Memory) Flush(context.Context) error { return nil }

// Len returns the number of items, expired ones included.
func (m *Memory) Len() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.items)
}

func clone(b []byte) []byte { return append([]byte(nil), b...) }
