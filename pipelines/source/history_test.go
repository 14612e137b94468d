package source

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gantry-dev/gantry/internal/gittest"
)

// historyRepo makes main: a → b → c, and a side branch a → x (diverged
// from c), with the git CLI.
func historyRepo(t *testing.T, allowSHA bool) (dir string, sha map[string]string) {
	t.Helper()
	dir = t.TempDir()
	git := gittest.Git(t, dir)
	git("init", "-q", "-b", "main")
	if allowSHA {
		git("config", "uploadpack.allowReachableSHA1InWant", "true")
	}
	sha = map[string]string{}
	commit := func(name string) {
		if err := os.WriteFile(filepath.Join(dir, "gantry.yaml"), []byte("commit: "+name+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		git("add", ".")
		git("commit", "-q", "-m", name)
		sha[name] = git("rev-parse", "HEAD")
	}
	commit("a")
	commit("b")
	commit("c")
	git("checkout", "-q", "-b", "side", sha["a"])
	commit("x")
	git("checkout", "-q", "main")
	// An unrelated root (an orphan history).
	git("checkout", "-q", "--orphan", "orphan")
	commit("o")
	git("checkout", "-q", "main")
	return dir, sha
}

func TestHistoryRelate(t *testing.T) {
	for _, allowSHA := range []bool{true, false} {
		t.Run(map[bool]string{true: "shallow by SHA", false: "full fetch"}[allowSHA], func(t *testing.T) {
			repo, sha := historyRepo(t, allowSHA)
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			cases := []struct {
				a, b  string
				depth int
				want  Relation
			}{
				{"c", "a", 0, Descends},
				{"a", "c", 0, Precedes},
				{"c", "c", 0, Same},
				{"b", "x", 0, Diverged}, // siblings: both histories read to the root a without meeting
				{"c", "o", 0, Diverged},
				{"c", "a", 2, Unknown}, // a is 3 commits back: past the depth
				{"c", "b", 2, Descends},
			}
			for _, c := range cases {
				h, err := FetchHistory(ctx, HistoryRequest{URL: "file://" + repo, Dir: filepath.Join(t.TempDir(), "h"), AllowLocal: true, Depth: c.depth},
					sha[c.a], sha[c.b])
				if err != nil {
					t.Fatal(err)
				}
				got, err := h.Relate(sha[c.a], sha[c.b])
				if err != nil {
					t.Fatal(err)
				}
				if got != c.want {
					t.Errorf("%s vs %s (depth %d): %s, want %s", c.a, c.b, c.depth, got, c.want)
				}
			}
			h, err := FetchHistory(ctx, HistoryRequest{URL: "file://" + repo, Dir: filepath.Join(t.TempDir(), "h"), AllowLocal: true}, sha["b"])
			if err != nil {
				t.Fatal(err)
			}
			if b, err := h.ReadFile(sha["b"], "gantry.yaml", 1<<10); err != nil || string(b) != "commit: b\n" {
				t.Errorf("gantry.yaml at b: %q %v", b, err)
			}
			if _, err := h.ReadFile(sha["b"], "missing.yaml", 1<<10); !os.IsNotExist(err) && !strings.Contains(err.Error(), "not exist") {
				t.Errorf("missing file: %v", err)
			}
			if _, err := FetchHistory(ctx, HistoryRequest{URL: "file://" + repo, Dir: filepath.Join(t.TempDir(), "h"), AllowLocal: true}, strings.Repeat("0", 40)); err == nil {
				t.Error("a commit the server does not have was fetched")
			}
		})
	}
}
