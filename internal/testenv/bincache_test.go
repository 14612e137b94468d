package testenv

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// A seeded binary is what go build decides on: kept when it is what the
// tree links to (its time reset, so not Untouched), linked again when the
// source changed; Store keeps the newest.
func TestBinCacheLetsGoBuildDecide(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a binary")
	}
	gobin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go tool on PATH")
	}
	src := t.TempDir()
	write := func(msg string) {
		t.Helper()
		for name, body := range map[string]string{
			"go.mod":  "module hello\n\ngo 1.24\n",
			"main.go": "package main\n\nfunc main() { println(\"" + msg + "\") }\n",
		} {
			if err := os.WriteFile(filepath.Join(src, name), []byte(body), 0o600); err != nil {
				t.Fatal(err)
			}
		}
	}
	c := &BinCache{dir: t.TempDir()}
	// build seeds a fresh directory, builds hello into it and runs it.
	build := func(wantSeeded bool) string {
		t.Helper()
		dir := filepath.Join(t.TempDir(), "bin")
		c.Seed(t, dir, "hello")
		fi, err := os.Stat(filepath.Join(dir, "hello"))
		if seeded := err == nil && fi.ModTime().Equal(SeedTime); seeded != wantSeeded {
			t.Fatalf("seeded: %v (%v), want %v", seeded, err, wantSeeded)
		}
		cmd := exec.Command(gobin, "build", "-o", filepath.Join(dir, "hello"), ".")
		cmd.Dir = src
		cmd.Env = append(os.Environ(), "GOWORK=off", "GOFLAGS=")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("go build: %v\n%s", err, out)
		}
		if u := Untouched(t, dir, "hello"); len(u) != 0 {
			t.Fatalf("go build left %v with the seed time", u)
		}
		out, err := exec.Command(filepath.Join(dir, "hello")).CombinedOutput()
		if err != nil {
			t.Fatal(err)
		}
		c.Store(t, dir, "hello")
		return string(out)
	}
	write("one")
	if out := build(false); out != "one\n" {
		t.Fatalf("first build printed %q", out)
	}
	if out := build(true); out != "one\n" {
		t.Fatalf("seeded build printed %q", out)
	}
	write("two")
	if out := build(true); out != "two\n" {
		t.Fatalf("after the source changed, the binary printed %q: the stale seed was kept", out)
	}
	if out := build(true); out != "two\n" {
		t.Fatalf("the cache kept the stale binary: %q", out)
	}
	// Nothing cached under a name: Seed skips it.
	dir := t.TempDir()
	c.Seed(t, dir, "absent")
	if ents, err := os.ReadDir(dir); err != nil || len(ents) != 0 {
		t.Fatalf("seeded a name never stored: %v %v", ents, err)
	}
}
