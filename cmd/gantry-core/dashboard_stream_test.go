package main

import (
	"bufio"
	"context"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gantry-dev/gantry/internal/testenv"
)

// A dashboard live log stream opened with a token ends within seconds of
// `gantry token revoke`, with the production re-check interval: the real
// `gantry serve` process (receiver only, so the pushed run stays queued and
// its stream would otherwise run forever) and the real token CLI. A stream
// of another token keeps going.
func TestServeDashboardStreamEndsOnRevoke(t *testing.T) {
	t.Parallel()
	testenv.Require(t)
	rig := newServeRig(t, "")
	b, err := os.ReadFile(rig.config)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(rig.config, []byte(strings.Replace(string(b), "server:\n", "server:\n  runWorkers: false\n", 1)), 0o600); err != nil {
		t.Fatal(err)
	}
	p := startGantry(t, filepath.Join(rig.dir, "serve.log"), "serve", "--config", rig.config)
	a := push(t, p.addr, "stream-1", "main", 1)
	if a.Status != "queued" {
		t.Fatalf("push answer %+v", a)
	}
	create := func(name string) (token, id string) {
		code, out, stderr := gantry(t, nil, "--config", rig.config, "token", "create", "--name", name, "--scope", "runs:read", "-o", "json")
		var c tokenCreated
		if code != exitOK || json.Unmarshal([]byte(out), &c) != nil || c.Token == "" {
			t.Fatalf("token create: %d %q %s", code, out, stderr)
		}
		return c.Token, c.ID
	}
	viewer, viewerID := create("viewer")
	bystander, _ := create("bystander")

	// open streams the run's events with token; lines arrive on the
	// channel, closed when gantry serve ends the response.
	open := func(token string) <-chan string {
		ctx, cancel := context.WithCancel(context.Background())
		t.Cleanup(cancel)
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+p.addr+"/ui/runs/"+a.RunID+"/events", nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode != http.StatusOK {
			resp.Body.Close()
			t.Fatalf("events: %d", resp.StatusCode)
		}
		lines := make(chan string, 64)
		go func() {
			defer close(lines)
			defer resp.Body.Close()
			sc := bufio.NewScanner(resp.Body)
			for sc.Scan() {
				lines <- sc.Text()
			}
		}()
		select {
		case l := <-lines:
			if l != "event: run" {
				t.Fatalf("first line %q", l)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("no first event")
		}
		return lines
	}
	s, other := open(viewer), open(bystander)

	if code, out, stderr := gantry(t, nil, "--config", rig.config, "token", "revoke", viewerID); code != exitOK {
		t.Fatalf("token revoke: %d %q %s", code, out, stderr)
	}
	revoked := time.Now()
	var last []string
	deadline := time.After(10 * time.Second)
	for done := false; !done; {
		select {
		case l, ok := <-s:
			if !ok {
				done = true
			} else if l != "" {
				last = append(last, l)
			}
		case <-deadline:
			t.Fatalf("the stream is still open 10s after its token was revoked\n%s", readFile(t, p.logFile))
		}
	}
	t.Logf("stream ended %s after the revocation", time.Since(revoked).Round(time.Millisecond))
	if n := len(last); n < 2 || last[n-2] != "event: end" || !strings.Contains(last[n-1], "no longer valid") {
		t.Fatalf("the stream did not end with an end event naming why: %q", last)
	}
	select {
	case _, ok := <-other:
		if !ok {
			t.Fatal("the stream of a valid token ended too")
		}
	default:
	}
}
