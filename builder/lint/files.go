package lint

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// isDockerfileName says whether a file in a directory is linted.
func isDockerfileName(name string) bool {
	return name == "Dockerfile" || strings.HasPrefix(name, "Dockerfile.") || strings.HasSuffix(name, ".Dockerfile") ||
		strings.HasSuffix(name, ".dockerfile")
}

// ReadFiles reads the Dockerfiles named by args: files, directories (every
// Dockerfile, Dockerfile.* and *.Dockerfile below, hidden directories,
// node_modules and vendor skipped) or - (stdin, reported as stdinName).
// No args means ./Dockerfile. Each file is bounded by MaxDockerfileSize.
func ReadFiles(args []string, stdin io.Reader, stdinName string) ([]File, error) {
	if len(args) == 0 {
		args = []string{"Dockerfile"}
	}
	var files []File
	read := func(path string, r io.Reader) error {
		b, err := io.ReadAll(io.LimitReader(r, MaxDockerfileSize+1))
		if err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
		if len(b) > MaxDockerfileSize {
			return fmt.Errorf("%s: larger than %d bytes", path, MaxDockerfileSize)
		}
		files = append(files, File{Path: path, Data: b})
		return nil
	}
	readFile := func(path string) error {
		f, err := os.Open(path)
		if err != nil {
			return err
		}
		defer f.Close()
		return read(filepath.ToSlash(path), f)
	}
	for _, arg := range args {
		if arg == "-" {
			if err := read(stdinName, stdin); err != nil {
				return nil, err
			}
			continue
		}
		fi, err := os.Stat(arg)
		if err != nil {
			return nil, err
		}
		if !fi.IsDir() {
			if err := readFile(arg); err != nil {
				return nil, err
			}
			continue
		}
		before := len(files)
		err = filepath.WalkDir(arg, func(path string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if d.IsDir() {
				if path != arg && (strings.HasPrefix(d.Name(), ".") || d.Name() == "node_modules" || d.Name() == "vendor") {
					return filepath.SkipDir
				}
				return nil
			}
			if d.Type().IsRegular() && isDockerfileName(d.Name()) {
				return readFile(path)
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
		if len(files) == before {
			return nil, errors.New(arg + ": no Dockerfile in this directory")
		}
	}
	return files, nil
}
