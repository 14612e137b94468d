package testenv

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// BinCache keeps the binaries a test links with `go build -o DIR/NAME`
// between test runs, one directory per checkout, so that a later run can
// put them back into its fresh DIR before it builds. go build then decides,
// as it does for any existing target: it reads the build ID the binary
// carries (a hash of every input of the link: sources, dependencies, flags,
// tags, toolchain) and links again unless that ID is the one it would
// produce. A test therefore always runs binaries of the tree under test;
// what the cache saves is only the link of an unchanged tree (seconds of
// CPU for each large binary).
type BinCache struct{ dir string }

// SeedTime is the modification time Seed gives the binaries it copies. go
// build resets the time of a target it links or finds up to date, so a
// binary that still has it was not looked at by any go build (see Untouched).
var SeedTime = time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)

// OpenBinCache returns the cache name (one per test: two tests may build a
// binary of the same name differently) for the checkout at root, under the
// user's cache directory (gantry/test-bin/<hash of root's absolute
// path>/name); one that does nothing when there is no user cache directory.
func OpenBinCache(t testing.TB, root, name string) *BinCache {
	t.Helper()
	abs, err := filepath.Abs(root)
	if err != nil {
		t.Fatal(err)
	}
	base, err := os.UserCacheDir()
	if err != nil {
		t.Logf("no user cache directory (%v): binaries are linked afresh", err)
		return &BinCache{}
	}
	sum := sha256.Sum256([]byte(abs))
	dir := filepath.Join(base, "gantry", "test-bin", hex.EncodeToString(sum[:6]), name)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatalf("binary cache: %v", err)
	}
	return &BinCache{dir: dir}
}

// Seed copies the cached binaries of names into dir (creating it), each with
// SeedTime as its modification time. A name not in the cache is skipped.
func (c *BinCache) Seed(t testing.TB, dir string, names ...string) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if c.dir == "" {
		return
	}
	for _, n := range names {
		dst := filepath.Join(dir, n)
		switch err := copyFile(filepath.Join(c.dir, n), dst); {
		case os.IsNotExist(err):
			continue
		case err != nil:
			t.Fatalf("binary cache: %v", err)
		}
		if err := os.Chtimes(dst, SeedTime, SeedTime); err != nil {
			t.Fatal(err)
		}
	}
}

// Store copies the binaries of names in dir into the cache, each replacing
// the cached one by a rename (a concurrent Seed reads the old or the new
// binary, whole), and only when it differs: a Go binary's build ID, which
// ends with the hash of its content, sits in its first kilobytes.
func (c *BinCache) Store(t testing.TB, dir string, names ...string) {
	t.Helper()
	if c.dir == "" {
		return
	}
	for _, n := range names {
		src, dst := filepath.Join(dir, n), filepath.Join(c.dir, n)
		same, err := sameHead(src, dst)
		if err != nil {
			t.Fatalf("binary cache: %v", err)
		}
		if same {
			continue
		}
		tmp := dst + fmt.Sprintf(".tmp%d", os.Getpid())
		if err := copyFile(src, tmp); err != nil {
			t.Fatalf("binary cache: %v", err)
		}
		if err := os.Rename(tmp, dst); err != nil {
			_ = os.Remove(tmp)
			t.Fatalf("binary cache: %v", err)
		}
	}
}

// Untouched returns those of names in dir that still have SeedTime: no go
// build linked them or checked them against the tree.
func Untouched(t testing.TB, dir string, names ...string) []string {
	t.Helper()
	var out []string
	for _, n := range names {
		fi, err := os.Stat(filepath.Join(dir, n))
		if err != nil {
			t.Fatal(err)
		}
		if fi.ModTime().Equal(SeedTime) {
			out = append(out, n)
		}
	}
	return out
}

// headSize covers the ELF note that holds a Go binary's build ID (go's
// buildid reader looks in the first 32 KiB).
const headSize = 64 << 10

// sameHead reports whether a and b have the same size and first headSize
// bytes; false when b does not exist.
func sameHead(a, b string) (bool, error) {
	ha, sa, err := head(a)
	if err != nil {
		return false, err
	}
	hb, sb, err := head(b)
	if os.IsNotExist(err) {
		return false, nil
	} else if err != nil {
		return false, err
	}
	return sa == sb && bytes.Equal(ha, hb), nil
}

func head(path string) ([]byte, int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, 0, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, 0, err
	}
	b := make([]byte, headSize)
	n, err := io.ReadFull(f, b)
	if err != nil && err != io.ErrUnexpectedEOF {
		return nil, 0, err
	}
	return b[:n], fi.Size(), nil
}

func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o755)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}
