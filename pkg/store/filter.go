package store

import (
	"hash/maphash"
	"math/bits"
)

// keyFilter answers "is this key surely not on disk?" without a read transaction: a Bloom
// filter of the keys the file holds. A replay asks about a key it never wrote far more often
// than about one it did (every new access key, every role that is not a Lambda's: 120,000
// reads on a dense history of 420,000 records, 4% of them found), and each read was a
// transaction of its own. A key it says may be there is read as before; a false "may" costs
// only that read.
type keyFilter struct {
	seed maphash.Seed
	bits []uint64
	n    int // keys added since it was built
}

// filterBitsPerKey and filterHashes give about 0.05% false answers at capacity.
const (
	filterBitsPerKey = 16
	filterHashes     = 8
	filterMinBits    = 1 << 20 // 128 KiB
)

func newKeyFilter(keys int) *keyFilter {
	n := max(filterMinBits, keys*filterBitsPerKey*2) // room to grow before the next build
	n = 1 << bits.Len(uint(n-1))
	return &keyFilter{seed: maphash.MakeSeed(), bits: make([]uint64, n/64)}
}

// full reports whether it holds more keys than it answers well for: time to build a larger
// one from the file.
func (f *keyFilter) full() bool { return f.n > len(f.bits)*64/filterBitsPerKey }

func (f *keyFilter) probe(key string) (h1, h2, mask uint64) {
	h := maphash.String(f.seed, key)
	return h, h>>32 | 1, uint64(len(f.bits)*64 - 1)
}

func (f *keyFilter) add(key string) {
	h1, h2, mask := f.probe(key)
	for i := range uint64(filterHashes) {
		j := (h1 + i*h2) & mask
		f.bits[j/64] |= 1 << (j % 64)
	}
	f.n++
}

// mayHave is false only for a key never added.
func (f *keyFilter) mayHave(key string) bool {
	h1, h2, mask := f.probe(key)
	for i := range uint64(filterHashes) {
		j := (h1 + i*h2) & mask
		if f.bits[j/64]&(1<<(j%64)) == 0 {
			return false
		}
	}
	return true
}
