// Package files reads the small files Gantry takes as configuration and as
// secrets. Reads are bounded, so a wrong path (a log, a device, a huge file)
// cannot exhaust memory, and errors name the file but never its content.
package files

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
)

// ErrTooLarge is wrapped by the error for a file over its limit.
var ErrTooLarge = errors.New("file too large")

// ErrEmpty is wrapped by ReadSecret's error for an empty secret.
var ErrEmpty = errors.New("file is empty")

// ReadBounded reads at most limit bytes of path; a longer file is an error
// (wrapping ErrTooLarge), never a silently truncated read. Errors from
// opening the file wrap the os error, so errors.Is(err, os.ErrNotExist)
// works.
func ReadBounded(path string, limit int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("%s: larger than %d bytes: %w", path, limit, ErrTooLarge)
	}
	return b, nil
}

// ReadSecret reads a secret (token, password, key) of at most limit bytes,
// trimmed of surrounding white space, which editors and `echo` add. An
// empty secret is an error (wrapping ErrEmpty): an empty key or password
// would silently weaken whatever it protects.
func ReadSecret(path string, limit int64) ([]byte, error) {
	b, err := ReadBounded(path, limit)
	if err != nil {
		return nil, err
	}
	s := strings.TrimSpace(string(b))
	if s == "" {
		return nil, fmt.Errorf("%s: %w", path, ErrEmpty)
	}
	return []byte(s), nil
}
