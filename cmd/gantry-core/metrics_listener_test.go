package main

import (
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/gantry-dev/gantry/internal/testenv"
)

// metricsRE finds the metrics listener's address in the serve log.
var metricsRE = regexp.MustCompile(`msg="serving metrics" addr=(\S+)`)

// metricsAddr is the address of the metrics listener (server.metricsListen)
// of the gantry serve process p, from its newest start in the log.
func (p *gantryProc) metricsAddr(t *testing.T) string {
	t.Helper()
	m := metricsRE.FindAllStringSubmatch(readFile(t, p.logFile), -1)
	if len(m) == 0 {
		t.Fatalf("gantry serve logged no metrics listener (server.metricsListen)\n%s", readFile(t, p.logFile))
	}
	return m[len(m)-1][1]
}

// /metrics is not served on the listener of `gantry serve` that receives
// GitHub's webhooks (the internet-facing one), with or without a token: it
// is served on server.metricsListen only, and without that key nowhere.
// Through the real `gantry serve` process.
func TestServeMetricsOnlyOnTheMetricsListener(t *testing.T) {
	testenv.Require(t)
	get := func(url, token string) (int, string) {
		t.Helper()
		req, err := http.NewRequest(http.MethodGet, url, nil)
		if err != nil {
			t.Fatal(err)
		}
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		return resp.StatusCode, string(b)
	}
	for _, c := range []struct {
		name          string
		metricsListen string // "" leaves the key out
	}{
		{"metrics listener configured", "127.0.0.1:0"},
		{"no metrics listener", ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			rig := newServeRig(t, "")
			b, err := os.ReadFile(rig.config)
			if err != nil {
				t.Fatal(err)
			}
			cfg := strings.Replace(string(b), "  metricsListen: 127.0.0.1:0\n", "", 1)
			cfg = strings.Replace(cfg, "server:\n", "server:\n  runWorkers: false\n", 1)
			if c.metricsListen != "" {
				cfg = strings.Replace(cfg, "server:\n", "server:\n  metricsListen: "+c.metricsListen+"\n", 1)
			}
			if err := os.WriteFile(rig.config, []byte(cfg), 0o600); err != nil {
				t.Fatal(err)
			}
			logFile := filepath.Join(rig.dir, "serve.log")
			p := startGantry(t, logFile, "serve", "--config", rig.config)
			// A push, so the receiver's own counters have something to say.
			if a := push(t, p.addr, "metrics-1", "main", 1); a.Status != "queued" {
				t.Fatalf("push answer %+v", a)
			}
			public := "http://" + p.addr
			for _, token := range []string{"", rig.token} {
				if code, body := get(public+"/metrics", token); code != http.StatusNotFound || strings.Contains(body, "go_goroutines") {
					t.Fatalf("GET /metrics on the webhook listener (token %v): %d, want 404 and no metrics:\n%.300s", token != "", code, body)
				}
			}
			if code, _ := get(public+"/healthz", ""); code != http.StatusOK {
				t.Fatalf("/healthz on the webhook listener: %d", code)
			}
			if c.metricsListen == "" {
				if m := metricsRE.FindString(readFile(t, logFile)); m != "" {
					t.Fatalf("a metrics listener without server.metricsListen: %s", m)
				}
				return
			}
			addr := p.metricsAddr(t)
			code, body := get("http://"+addr+"/metrics", "")
			if code != http.StatusOK || !strings.Contains(body, "go_goroutines") || !strings.Contains(body, "gantry_webhook") {
				t.Fatalf("GET /metrics on the metrics listener %s: %d\n%.500s", addr, code, body)
			}
			// The metrics listener serves metrics and probes, nothing else.
			for _, path := range []string{"/webhooks/github", "/api/v1/runs", "/ui/"} {
				if code, _ := get("http://"+addr+path, rig.token); code != http.StatusNotFound {
					t.Errorf("GET %s on the metrics listener: %d, want 404", path, code)
				}
			}
		})
	}
}
