package replay

import (
	"encoding/binary"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
)

// A trail's day folders are listed with plain system calls (open, getdents64, and the
// folder kept open), and their files opened relative to it (openat): an organisation's
// trail is tens of thousands of day folders of a few files each, and os.ReadDir's File,
// DirEntry values and sort, then a walk of every component of each file's path, were a
// sixth of a one-core replay of one.

// dirBufs are getdents64's buffers.
var dirBufs = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

// listDir lists a folder's entries in name order; held is the folder, kept open for its
// files' opening when held has room (nil otherwise).
func listDir(path string, held *heldDirs) (*heldDir, []fs.DirEntry, error) {
	fd, err := openDir(path)
	if err != nil {
		return nil, nil, &fs.PathError{Op: "open", Path: path, Err: err}
	}
	bp := dirBufs.Get().(*[]byte)
	defer dirBufs.Put(bp)
	var ents []fs.DirEntry
	for {
		n, err := syscall.Getdents(fd, *bp)
		if err == syscall.EINTR {
			continue
		}
		if err != nil {
			syscall.Close(fd)
			return nil, nil, &fs.PathError{Op: "readdirent", Path: path, Err: err}
		}
		if n <= 0 {
			break
		}
		ents = parseDirents((*bp)[:n], path, ents)
	}
	slices.SortFunc(ents, func(a, b fs.DirEntry) int { return strings.Compare(a.Name(), b.Name()) })
	h := held.hold(fd)
	if h == nil {
		syscall.Close(fd)
	}
	return h, ents, nil
}

func openDir(path string) (int, error) {
	for {
		fd, err := syscall.Open(path, syscall.O_RDONLY|syscall.O_DIRECTORY|syscall.O_CLOEXEC, 0)
		if err != syscall.EINTR {
			return fd, err
		}
	}
}

// parseDirents appends the entries of a getdents64 buffer (struct linux_dirent64: inode
// 8 bytes, offset 8, record length 2, type 1, then the name and a NUL).
func parseDirents(b []byte, dir string, ents []fs.DirEntry) []fs.DirEntry {
	for len(b) >= 19 {
		reclen := int(binary.NativeEndian.Uint16(b[16:]))
		if reclen < 19 || reclen > len(b) {
			break
		}
		ino, typ, name := binary.NativeEndian.Uint64(b), b[18], b[19:reclen]
		b = b[reclen:]
		if i := slices.Index(name, 0); i >= 0 {
			name = name[:i]
		}
		if ino == 0 || string(name) == "." || string(name) == ".." {
			continue
		}
		e := &dirent{dir: dir, name: string(name)}
		switch typ {
		case syscall.DT_REG:
		case syscall.DT_DIR:
			e.typ = fs.ModeDir
		case syscall.DT_LNK:
			e.typ = fs.ModeSymlink
		case syscall.DT_FIFO:
			e.typ = fs.ModeNamedPipe
		case syscall.DT_SOCK:
			e.typ = fs.ModeSocket
		case syscall.DT_CHR:
			e.typ = fs.ModeDevice | fs.ModeCharDevice
		case syscall.DT_BLK:
			e.typ = fs.ModeDevice
		default: // DT_UNKNOWN: a file system that does not say
			if st, err := os.Lstat(filepath.Join(dir, e.name)); err == nil {
				e.typ = st.Mode().Type()
			} else {
				e.typ = fs.ModeIrregular
			}
		}
		ents = append(ents, e)
	}
	return ents
}

// dirent is a listed entry.
type dirent struct {
	dir, name string
	typ       fs.FileMode
}

func (e *dirent) Name() string               { return e.name }
func (e *dirent) IsDir() bool                { return e.typ.IsDir() }
func (e *dirent) Type() fs.FileMode          { return e.typ }
func (e *dirent) Info() (fs.FileInfo, error) { return os.Lstat(filepath.Join(e.dir, e.name)) }

// heldDir is a listed folder kept open until each of its files, counted in left, was
// opened (or the run ended).
type heldDir struct {
	fd   int
	left atomic.Int32
	set  *heldDirs
}

// open opens the folder's file name, and counts it done.
func (h *heldDir) open(name, path string) (io.ReadCloser, error) {
	defer h.done()
	for {
		fd, err := syscall.Openat(h.fd, name, syscall.O_RDONLY|syscall.O_CLOEXEC, 0)
		if err == syscall.EINTR {
			continue
		}
		if err != nil {
			return nil, &fs.PathError{Op: "open", Path: path, Err: err}
		}
		return rawFile(fd), nil
	}
}

// add counts one more file to be opened from the folder (while it is listed: the
// listing's own count keeps it open).
func (h *heldDir) add() { h.left.Add(1) }

// done counts one of the folder's files done: the last closes the folder. Counted
// without the set's lock, which only the closing takes: the readers opening files and the
// listing holding the next day's folders waited on each other at every file.
func (h *heldDir) done() {
	if h.left.Add(-1) == 0 {
		h.set.close(h)
	}
}

// heldDirs are the folders a run holds open, at most heldRoom() at once: past that, a
// folder's files are opened by their path.
type heldDirs struct {
	mu   sync.Mutex
	open map[*heldDir]struct{}
	room int // how many may be open at once (heldRoom, read once)
}

var maxHeldDirs = 4096 // a variable for the tests

// heldRoom is how many folders may be held open: maxHeldDirs, and never more than a
// quarter of the process's open-file limit (Go raises it to the hard limit at start; a
// container may cap that at 1,024), so that the files themselves can always be opened.
func heldRoom() int {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return 0
	}
	return int(min(uint64(maxHeldDirs), lim.Cur/4))
}

// hold keeps fd open for files to be counted in (add); nil when there is no room.
func (s *heldDirs) hold(fd int) *heldDir {
	if s == nil {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.open == nil {
		s.open = map[*heldDir]struct{}{}
		s.room = heldRoom()
	}
	if len(s.open) >= s.room {
		return nil
	}
	h := &heldDir{fd: fd, set: s}
	h.left.Store(1) // the listing's own count, given back by done once it listed
	s.open[h] = struct{}{}
	return h
}

// close closes a folder whose files were all opened.
func (s *heldDirs) close(h *heldDir) {
	s.mu.Lock()
	_, ok := s.open[h]
	delete(s.open, h)
	s.mu.Unlock()
	if ok {
		syscall.Close(h.fd)
	}
}

// closeAll closes the folders still open (a run that stopped before opening their files).
func (s *heldDirs) closeAll() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for h := range s.open {
		syscall.Close(h.fd)
		delete(s.open, h)
	}
}
