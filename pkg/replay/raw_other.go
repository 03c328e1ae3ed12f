//go:build !unix

package replay

import (
	"io"
	"os"
)

func openRaw(path string) (io.ReadCloser, error) { return os.Open(path) }

func openFilesFor(int) error { return nil }

func openFilesRoom() int { return 1 << 30 }
