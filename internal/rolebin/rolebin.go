// Package rolebin finds the role binaries a command runs in (see
// cmd/gantry): beside the running executable, symlinks resolved, then in
// ../libexec/gantry from there; never on PATH, so a directory earlier on
// PATH cannot stand in for one. It is shared by the front, which hands a
// command line to its role, and by role binaries that hand a command on to
// a wider one (gantry-policy's online checks to gantry-admission).
package rolebin

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// Roles. Core implements every command: the fallback for any role.
// Admission also implements policy's commands: gantry-policy hands it the
// checks that need the registry.
const (
	Core      = "core"
	Admission = "admission"
	Build     = "build"
	Policy    = "policy"
)

// Candidates are the roles whose binaries implement role's commands,
// narrowest first.
func Candidates(role string) []string {
	switch role {
	case Core:
		return []string{Core}
	case Policy:
		return []string{Policy, Admission, Core}
	}
	return []string{role, Core}
}

// Implements reports whether the binary of role bin has the commands of
// role.
func Implements(bin, role string) bool {
	return slices.Contains(Candidates(role), bin)
}

// Self is the running executable, symlinks resolved.
func Self() (string, error) {
	p, err := os.Executable()
	if err == nil {
		p, err = filepath.EvalSymlinks(p)
	}
	if err != nil {
		return "", fmt.Errorf("cannot locate this executable to find its role binaries: %w", err)
	}
	return p, nil
}

// Find is the binary for role: gantry-ROLE beside self or in
// ../libexec/gantry from there, else the next of its Candidates (at last
// gantry-core) in the same places.
func Find(self, role string) (string, error) {
	dir := filepath.Dir(self)
	dirs := []string{dir, filepath.Join(dir, "..", "libexec", "gantry")}
	var names []string
	for _, r := range Candidates(role) {
		names = append(names, "gantry-"+r)
	}
	for _, n := range names {
		for _, d := range dirs {
			p := filepath.Join(d, n)
			if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
				return p, nil
			}
		}
	}
	return "", fmt.Errorf("this command is implemented by %s, which is not installed beside %s or in %s "+
		"(make build puts every binary in bin/; go install github.com/gantry-dev/gantry/cmd/...)",
		strings.Join(names, " or "), self, dirs[1])
}
