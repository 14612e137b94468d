package main

import (
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/spf13/cobra"

	"github.com/gantry-dev/gantry/pipelines"
	"github.com/gantry-dev/gantry/pipelines/pipelinestest"
)

// noTestHooksEnv, set in a child's environment, leaves this test binary
// without its test hooks: the child's CLI is the production one.
const noTestHooksEnv = "GANTRY_TEST_NO_HOOKS"

// In this test binary only, serve and worker take the hidden
// --test-stages record:FILE:N:DELAY: recording stages (pipelinestest)
// instead of the real ones.
func init() {
	if os.Getenv(noTestHooksEnv) != "" {
		return
	}
	testStagesHook = &stagesHook{
		flags: func(cmd *cobra.Command) {
			cmd.Flags().String("test-stages", "", "TEST ONLY: record:FILE:N:DELAY")
			_ = cmd.Flags().MarkHidden("test-stages") // the flag was just added
		},
		stages: func(cmd *cobra.Command) ([]pipelines.Stage, bool, error) {
			spec, err := cmd.Flags().GetString("test-stages")
			if err != nil || spec == "" {
				return nil, false, err
			}
			st, err := pipelinestest.ParseStages(spec)
			return st, true, err
		},
	}
}

// The production binary has no --test-stages: run in a child without the
// hook (what `go build ./cmd/gantry` links), serve and worker reject it as
// an unknown flag, and the recording stages are not linked at all.
func TestProductionBinaryHasNoTestStages(t *testing.T) {
	t.Parallel()
	if testStagesHook == nil {
		t.Fatal("the test hook is not installed in this test binary")
	}
	dir := t.TempDir()
	for _, args := range [][]string{
		{"serve", "--test-stages", "record:" + filepath.Join(dir, "calls") + ":1:1ms"},
		{"worker", "--nats-url", "nats://127.0.0.1:1", "--test-stages", "record:" + filepath.Join(dir, "calls") + ":1:1ms"},
	} {
		t.Run(args[0], func(t *testing.T) {
			self, err := os.Executable()
			if err != nil {
				t.Fatal(err)
			}
			b, err := json.Marshal(args)
			if err != nil {
				t.Fatal(err)
			}
			cmd := exec.Command(self, "-test.run=^TestGantryProcess$")
			cmd.Env = append(os.Environ(), processArgsEnv+"="+string(b), noTestHooksEnv+"=1")
			out, err := cmd.CombinedOutput()
			var ee *exec.ExitError
			if !errors.As(err, &ee) || ee.ExitCode() != exitFailure || !strings.Contains(string(out), "unknown flag: --test-stages") {
				t.Fatalf("production CLI with --test-stages: %v\n%s", err, out)
			}
		})
	}
	gobin, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("go tool needed to list the binary's packages: %v", err)
	}
	out, err := exec.Command(gobin, "list", "-deps", ".").Output()
	if err != nil {
		t.Fatalf("go list -deps: %v", err)
	}
	deps := strings.Fields(string(out))
	if len(deps) < 100 || !slices.Contains(deps, "github.com/gantry-dev/gantry/pipelines") {
		t.Fatalf("go list -deps looks wrong (%d packages)", len(deps))
	}
	for _, d := range deps {
		if strings.HasSuffix(d, "test") && strings.HasPrefix(d, "github.com/gantry-dev/gantry/") {
			t.Errorf("the gantry binary links the test package %s", d)
		}
	}
}
