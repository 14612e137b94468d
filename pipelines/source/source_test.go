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

// gitRepo makes a real repository with the git CLI: two commits on main,
// and returns its path and both SHAs.
func gitRepo(t *testing.T, allowSHA bool) (dir, first, second string) {
	t.Helper()
	dir = t.TempDir()
	git := gittest.Git(t, dir)
	git("init", "-q", "-b", "main")
	if allowSHA {
		git("config", "uploadpack.allowReachableSHA1InWant", "true")
	}
	if err := os.WriteFile(filepath.Join(dir, "Dockerfile"), []byte("FROM scratch\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	git("add", ".")
	git("commit", "-q", "-m", "first commit\n\nbody")
	first = git("rev-parse", "HEAD")
	if err := os.WriteFile(filepath.Join(dir, "Dockerfile"), []byte("FROM scratch\nLABEL v=2\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	git("commit", "-q", "-am", "second commit")
	second = git("rev-parse", "HEAD")
	return dir, first, second
}

func TestFetchExactCommit(t *testing.T) {
	for _, allowSHA := range []bool{true, false} {
		name := map[bool]string{true: "server serves SHAs (shallow)", false: "server refuses SHAs (full fetch)"}[allowSHA]
		t.Run(name, func(t *testing.T) {
			repo, first, second := gitRepo(t, allowSHA)
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			// The older commit, while the branch points at the newer one:
			// the run must build what was pushed, not the branch tip.
			co, err := Fetch(ctx, Request{URL: "file://" + repo, Commit: first, Dir: filepath.Join(t.TempDir(), "co"), AllowLocal: true})
			if err != nil {
				t.Fatal(err)
			}
			if co.Commit != first || co.Subject != "first commit" || co.Author != "Ada" || co.Shallow != allowSHA {
				t.Fatalf("checkout %+v", co)
			}
			b, err := os.ReadFile(filepath.Join(co.Dir, "Dockerfile"))
			if err != nil || string(b) != "FROM scratch\n" {
				t.Fatalf("working tree is not the first commit's: %q %v", b, err)
			}
			_ = second
		})
	}
}

func TestFetchRefusals(t *testing.T) {
	repo, first, _ := gitRepo(t, true)
	ctx := context.Background()
	missing := strings.Repeat("0", 40)
	cases := []struct {
		name string
		req  Request
		want string
	}{
		{"short sha", Request{URL: "file://" + repo, Commit: first[:12], AllowLocal: true}, "full 40-character"},
		{"unknown commit", Request{URL: "file://" + repo, Commit: missing, AllowLocal: true}, missing},
		{"local without permission", Request{URL: "file://" + repo, Commit: first}, "only for `gantry run DIR`"},
		{"plain path without permission", Request{URL: repo, Commit: first}, "only for `gantry run DIR`"},
		{"plain http", Request{URL: "http://example.com/r.git", Commit: first}, "plain http is refused"},
		{"token over ssh", Request{URL: "ssh://git@example.com/r.git", Commit: first, Auth: Auth{Token: "t"}}, "needs an https URL"},
		{"ssh key without known_hosts", Request{URL: "ssh://git@example.com/r.git", Commit: first, Auth: Auth{SSHKeyFile: "/k"}}, "known_hosts"},
		{"both credentials", Request{URL: "https://example.com/r.git", Commit: first, Auth: Auth{Token: "t", SSHKeyFile: "/k"}}, "not both"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			c.req.Dir = filepath.Join(t.TempDir(), "co")
			_, err := Fetch(ctx, c.req)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("err = %v, want %q", err, c.want)
			}
		})
	}
}

func TestFetchHonoursContext(t *testing.T) {
	repo, first, _ := gitRepo(t, true)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := Fetch(ctx, Request{URL: "file://" + repo, Commit: first, Dir: t.TempDir(), AllowLocal: true}); err == nil {
		t.Fatal("fetch with a cancelled context succeeded")
	}
}

func TestErrorsDoNotCarryURLCredentials(t *testing.T) {
	_, err := Fetch(context.Background(), Request{URL: "http://user:hunter2@example.com/r.git", Commit: strings.Repeat("a", 40), Dir: t.TempDir()})
	if err == nil || strings.Contains(err.Error(), "hunter2") {
		t.Fatalf("err = %v", err)
	}
}
