//go:build unix

package replay

import (
	"fmt"
	"io"
	"io/fs"
	"syscall"
)

// rawFile is a file read with plain system calls: no poller registration and no
// finalizer, which os.File costs on each of a trail folder's many small files.
type rawFile int

func openRaw(path string) (io.ReadCloser, error) {
	for {
		fd, err := syscall.Open(path, syscall.O_RDONLY|syscall.O_CLOEXEC, 0)
		if err == syscall.EINTR {
			continue
		}
		if err != nil {
			return nil, &fs.PathError{Op: "open", Path: path, Err: err}
		}
		return rawFile(fd), nil
	}
}

func (f rawFile) Read(p []byte) (int, error) {
	for {
		n, err := syscall.Read(int(f), p)
		switch {
		case err == syscall.EINTR:
			continue
		case err != nil:
			return 0, err
		case n == 0 && len(p) > 0:
			return 0, io.EOF
		}
		return n, nil
	}
}

func (f rawFile) Close() error { return syscall.Close(int(f)) }

// openFilesRoom is how many inputs may be read side by side within the open-file limit
// (openFilesFor).
func openFilesRoom() int {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil || lim.Cur > 1<<30 {
		return 1 << 30
	}
	return int(lim.Cur/4*3) - 64
}

// openFilesFor checks that n inputs read side by side (each an open file for the whole
// run, since the merge reads them all up to the same time) fit the process's open-file
// limit, with a quarter of it left for the trail's folders and files, the state and the
// readers: past it, inputs would fail to open one by one, their records missing from a
// replay that otherwise ran.
func openFilesFor(n int) error {
	if n <= manyStreams {
		return nil
	}
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil || lim.Cur > 1<<30 { // unknown, or as good as unlimited
		return nil
	}
	if room := openFilesRoom(); n > room {
		return usageError{fmt.Errorf("%d inputs are read side by side, each an open file, and the open-file limit of %d leaves room for %d: raise it (ulimit -n %d) or give fewer, larger files", n, lim.Cur, max(room, 0), n*4/3+128)}
	}
	return nil
}
