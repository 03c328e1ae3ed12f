//go:build unix

package store

import (
	"os"
	"syscall"
)

// openNoFollow opens a file as os.OpenFile does, but fails on a symlink (ELOOP).
func openNoFollow(name string, flag int, perm os.FileMode) (*os.File, error) {
	return os.OpenFile(name, flag|syscall.O_NOFOLLOW, perm)
}
