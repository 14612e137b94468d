package main

import (
	"io"
	"testing"

	"github.com/gantry-dev/gantry/internal/cmdtable"
)

// The front reads its table on every command: part of every command's
// start-up.
func BenchmarkReadTableAndRoute(b *testing.B) {
	for b.Loop() {
		tab, err := cmdtable.Parse(commandsJSON)
		if err != nil {
			b.Fatal(err)
		}
		r := tab.Route([]string{"build", "--context", ".", "--image", "r.example/x", "--push"})
		if r.Path != "build" {
			b.Fatalf("routed to %q", r.Path)
		}
	}
}

func BenchmarkVersion(b *testing.B) {
	for b.Loop() {
		if code := run([]string{"version"}, io.Discard, io.Discard, nil, nil); code != exitOK {
			b.Fatalf("exit %d", code)
		}
	}
}
