//go:build !unix

package store

import "os"

// openNoFollow is os.OpenFile where O_NOFOLLOW does not exist.
func openNoFollow(name string, flag int, perm os.FileMode) (*os.File, error) {
	return os.OpenFile(name, flag, perm)
}
