// Package gittest runs the git CLI for tests that need a real repository
// (the server side of a fetch is git's own, not go-git's): a fixed author
// and committer, and no user or global configuration to change results.
package gittest

import (
	"os"
	"os/exec"
	"strings"
	"testing"
)

// Git returns a function that runs git with args in dir and returns its
// output, trimmed; a failing command fails t with git's output.
func Git(t testing.TB, dir string) func(args ...string) string {
	return func(args ...string) string {
		t.Helper()
		cmd := exec.Command("git", args...)
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "GIT_AUTHOR_NAME=Ada", "GIT_AUTHOR_EMAIL=ada@example.com",
			"GIT_COMMITTER_NAME=Ada", "GIT_COMMITTER_EMAIL=ada@example.com", "GIT_CONFIG_GLOBAL=/dev/null")
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("git %v: %v\n%s", args, err, out)
		}
		return strings.TrimSpace(string(out))
	}
}
