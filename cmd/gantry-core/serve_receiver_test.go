package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gantry-dev/gantry/internal/testenv"
	"github.com/gantry-dev/gantry/pipelines"
)

// A receiver-only `gantry serve` (server.runWorkers: false) does not build
// the pipeline's stages, so it starts without what only workers hold (here a
// signing key that is not there), and still queues pushes; with workers, the
// same configuration is refused at start, naming the key.
func TestServeReceiverOnlyBuildsNoStages(t *testing.T) {
	testenv.Require(t)
	for _, c := range []struct {
		name       string
		runWorkers bool
	}{
		{"workers: the stages are built, the missing key refuses the start", true},
		{"receiver only: starts and queues", false},
	} {
		t.Run(c.name, func(t *testing.T) {
			rig := newServeRig(t, "")
			b, err := os.ReadFile(rig.config)
			if err != nil {
				t.Fatal(err)
			}
			missingKey := filepath.Join(rig.dir, "no-such-cosign.key")
			cfg := strings.Replace(string(b), "server:\n", "server:\n  runWorkers: "+map[bool]string{true: "true", false: "false"}[c.runWorkers]+"\n", 1) +
				"signer:\n  keySource: file\n  keyFile: " + missingKey + "\n"
			if err := os.WriteFile(rig.config, []byte(cfg), 0o600); err != nil {
				t.Fatal(err)
			}
			if c.runWorkers {
				code, _, stderr := gantryWithTimeout(t, "serve", "--config", rig.config)
				if code != exitFailure || !strings.Contains(stderr, "pipeline stages") || !strings.Contains(stderr, "no-such-cosign.key") {
					t.Fatalf("exit %d, stderr %q: want exit 2 naming the stages and the key", code, stderr)
				}
				return
			}
			logFile := filepath.Join(rig.dir, "serve.log")
			p := startGantry(t, logFile, "serve", "--config", rig.config)
			if log := readFile(t, logFile); !strings.Contains(log, "no workers in this process") {
				t.Errorf("the log does not say there are no workers:\n%s", log)
			}
			if code := apiGet(t, p.addr, "", "/readyz", nil); code != 200 {
				t.Fatalf("/readyz %d", code)
			}
			a := push(t, p.addr, "receiver-1", "main", 1)
			if a.Status != "queued" || a.RunID == "" {
				t.Fatalf("push answer %+v", a)
			}
			// Nobody works on it here: it is queued for `gantry worker`.
			var run pipelines.Run
			if code := apiGet(t, p.addr, rig.token, "/api/v1/runs/"+a.RunID, &run); code != 200 || run.State != pipelines.StateQueued {
				t.Fatalf("run %s: %d %s, want queued", a.RunID, code, run.State)
			}
		})
	}
}
