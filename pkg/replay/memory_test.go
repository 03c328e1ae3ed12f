package replay

import (
	"runtime"
	"runtime/debug"
	"testing"
)

// TestLimiterKeepsHeadroom: with more live than its base allows, the limit is raised to
// leave headroom above it, and comes back down once that memory is gone.
func TestLimiterKeepsHeadroom(t *testing.T) {
	defer debug.SetMemoryLimit(debug.SetMemoryLimit(-1))
	const base = 16 << 20
	l := startLimiter(base)
	defer l.close()
	if got := debug.SetMemoryLimit(-1); got < base {
		t.Fatalf("limit %d, want at least the base %d", got, base)
	}
	held := make([][]byte, 64)
	for i := range held {
		held[i] = make([]byte, 1<<20)
	}
	runtime.GC()
	l.check()
	raised := debug.SetMemoryLimit(-1)
	if raised < 64<<20+headroom(64<<20) {
		t.Errorf("64 MiB live under a base of 16 MiB: limit %d MiB, want at least %d MiB", raised>>20, (64<<20+headroom(64<<20))>>20)
	}
	runtime.KeepAlive(held)
	held = nil
	runtime.GC()
	l.check()
	if got := debug.SetMemoryLimit(-1); got >= raised-32<<20 {
		t.Errorf("the 64 MiB gone: limit %d MiB, want it back down from %d MiB", got>>20, raised>>20)
	}
}

// TestLimiterAppliesRaisedBase: a base raised by less than the checks' step (a few hundred
// files past 400) is applied all the same.
func TestLimiterAppliesRaisedBase(t *testing.T) {
	defer debug.SetMemoryLimit(debug.SetMemoryLimit(-1))
	const base = 512 << 20 // above what the test's heap and headroom ask
	l := startLimiter(base)
	defer l.close()
	l.setBase(base + 100<<10)
	if got := debug.SetMemoryLimit(-1); got != base+100<<10 {
		t.Fatalf("limit %d after the base was raised to %d", got, base+100<<10)
	}
}
