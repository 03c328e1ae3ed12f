package cloudtrail

import (
	"bufio"
	"bytes"
	"errors"
	"io"
)

// SharedBuffer is one read buffer for the inputs one goroutine reads in turn (coroutines
// of one merge, ReadOptions.Shared): a reader refills it only after its BeforeRead hook,
// the one point where another input may run, and moves the bytes it has not read yet
// (part of a line) aside when another reader takes the buffer. Hundreds of per-account
// files read side by side each had a buffer of their own, 6.4 MB between 400 of them,
// cold in the cache by the time each was read again: the system wrote every read into
// memory that had left the cache, and the parsing read it from there.
type SharedBuffer struct {
	buf   []byte
	owner *sharedReader
}

// NewSharedBuffer returns a buffer of size bytes for ReadOptions.Shared.
func NewSharedBuffer(size int) *SharedBuffer { return &SharedBuffer{buf: make([]byte, size)} }

// ErrStopped is what reading returns once ReadOptions.BeforeRead said to stop.
var ErrStopped = errors.New("cloudtrail: reading stopped")

// sharedReader is bufio.Reader's part that ReadWith uses, over a SharedBuffer.
type sharedReader struct {
	sb     *SharedBuffer
	rd     io.Reader
	before func() bool
	carry  []byte // the unread bytes while another reader has the buffer
	r, w   int    // the unread bytes: sb.buf[r:w] while this reader owns it, else carry[r:w]
	err    error
}

func (s *sharedReader) reset(sb *SharedBuffer, rd io.Reader, before func() bool) {
	*s = sharedReader{sb: sb, rd: rd, before: before, carry: s.carry[:0]}
}

// release gives the buffer up (at the end of an input): its unread bytes are dropped.
func (s *sharedReader) release() {
	if s.sb != nil && s.sb.owner == s {
		s.sb.owner = nil
	}
	s.sb, s.rd, s.before = nil, nil, nil
}

func (s *sharedReader) data() []byte {
	if s.sb.owner == s {
		return s.sb.buf[s.r:s.w]
	}
	return s.carry[s.r:s.w]
}

// fill reads more after the hook: the buffer is taken (its owner's unread bytes moved to
// its carry) or compacted, then read into.
func (s *sharedReader) fill() {
	if s.err != nil {
		return
	}
	if s.before != nil && !s.before() {
		s.err = ErrStopped
		return
	}
	b := s.sb
	if b.owner != s {
		if o := b.owner; o != nil {
			o.carry = append(o.carry[:0], b.buf[o.r:o.w]...)
			o.r, o.w = 0, len(o.carry)
		}
		s.w = copy(b.buf, s.carry[s.r:s.w])
		s.r = 0
		b.owner = s
	} else if s.r > 0 {
		s.w = copy(b.buf, b.buf[s.r:s.w])
		s.r = 0
	}
	for range 100 {
		if s.w == len(b.buf) {
			return
		}
		n, err := s.rd.Read(b.buf[s.w:])
		s.w += n
		if err != nil {
			s.err = err
			return
		}
		if n > 0 {
			return
		}
	}
	s.err = io.ErrNoProgress
}

// ReadSlice is bufio.Reader's: the line is valid until the next call.
func (s *sharedReader) ReadSlice(delim byte) ([]byte, error) {
	searched := 0
	for {
		d := s.data()
		if i := bytes.IndexByte(d[searched:], delim); i >= 0 {
			s.r += searched + i + 1
			return d[:searched+i+1], nil
		}
		if s.err != nil {
			s.r = s.w
			return d, s.err
		}
		if len(d) >= len(s.sb.buf) {
			s.r = s.w
			return d, bufio.ErrBufferFull
		}
		searched = len(d)
		s.fill()
	}
}

// Peek is bufio.Reader's.
func (s *sharedReader) Peek(n int) ([]byte, error) {
	for s.w-s.r < n && s.w-s.r < len(s.sb.buf) && s.err == nil {
		s.fill()
	}
	d := s.data()
	if len(d) < n {
		return d, s.err
	}
	return d[:n], nil
}

// Discard is bufio.Reader's, for n at most what Peek gave.
func (s *sharedReader) Discard(n int) (int, error) {
	n = min(n, s.w-s.r)
	s.r += n
	return n, nil
}
