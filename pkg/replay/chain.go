package replay

import (
	"cmp"
	"container/heap"
	"slices"
)

// Files that follow one another in time are read one after another as one stream: a
// folder of daily exports per account (…/<account>/2026-03-01.ndjson) is hundreds of
// accounts but tens of thousands of files, and each file read side by side is an open file
// and a read's worth of records held (18,000 of them were refused for the open-file limit).
// A file follows a stream when its first record is not before the end of the stream's
// last file's span: none of its records is then more than the reorder window behind what
// the stream read before it (segmentsOf, span). A file whose span is unknown (gzipped, a
// JSON document, a segment) is a stream of its own.

// chained groups inputs into streams, each in the order its files are read; every file
// keeps its own src. Greedy by first time, each file to the stream that ended earliest:
// as few streams as the most files that overlap at one time.
func chained(ins []input) [][]input {
	order := make([]int, len(ins))
	for i := range order {
		order[i] = i
	}
	slices.SortStableFunc(order, func(a, b int) int {
		return cmp.Compare(ins[a].span.from, ins[b].span.from)
	})
	var chains [][]input
	var ends chainEnds
	for _, i := range order {
		in := ins[i]
		if !in.span.known() {
			chains = append(chains, []input{in})
			continue
		}
		if len(ends) > 0 && ends[0].to <= in.span.from {
			c := ends[0].chain
			chains[c] = append(chains[c], in)
			ends[0].to = in.span.to
			heap.Fix(&ends, 0)
			continue
		}
		heap.Push(&ends, chainEnd{to: in.span.to, chain: len(chains)})
		chains = append(chains, []input{in})
	}
	// In the order of their first files' sources: the streams' order does not change what
	// is decided (ties keep their sources'), but a run reads as the command line gave.
	slices.SortStableFunc(chains, func(a, b []input) int { return a[0].src - b[0].src })
	return chains
}

// chainEnds orders the streams being built by the end of their last file's span.
type chainEnd struct {
	to    int64
	chain int
}

type chainEnds []chainEnd

func (h chainEnds) Len() int           { return len(h) }
func (h chainEnds) Less(i, j int) bool { return h[i].to < h[j].to }
func (h chainEnds) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *chainEnds) Push(x any)        { *h = append(*h, x.(chainEnd)) }
func (h *chainEnds) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}

// numbered sets each input's src, its place among ins from first.
func numbered(ins []input, first int) []input {
	out := slices.Clone(ins)
	for i := range out {
		out[i].src = first + i
	}
	return out
}

// streamsOf is how many streams the inputs of a stream each (plain) are read as: chained
// past manyStreams of them.
func streamsOf(plain []input) int {
	if len(plain) <= manyStreams {
		return len(plain)
	}
	return len(chained(numbered(plain, 1)))
}
