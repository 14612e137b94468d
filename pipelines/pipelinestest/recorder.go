// Package pipelinestest holds stages for testing the run machinery itself:
// they record every call in a file and can be slowed down, so a test can
// kill a worker mid-stage and check afterwards what ran how often.
//
// TEST ONLY. They reach gantry serve and gantry worker only in
// cmd/gantry-core's test binary, through the hidden `--test-stages` flag its
// testhooks_test.go adds for the process-level tests (kill -9, restart);
// the production binary neither has the flag nor links this package.
package pipelinestest

import (
	"context"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/gantry-dev/gantry/pipelines"
)

// Recorder is a stage that appends "start RUN STAGE" when called and
// "done RUN STAGE" when it finishes, to File, with Delay between the two
// (cut short when ctx is cancelled, then no "done" line is written).
type Recorder struct {
	StageName string
	File      string
	Delay     time.Duration
	mu        sync.Mutex
}

// Name implements pipelines.Stage.
func (r *Recorder) Name() string { return r.StageName }

// Run implements pipelines.Stage.
func (r *Recorder) Run(ctx context.Context, run pipelines.Run, log io.Writer) (map[string]string, error) {
	if err := r.record("start", run.ID); err != nil {
		return nil, err
	}
	fmt.Fprintf(log, "stage %s of run %s for %s@%s\n", r.StageName, run.ID, run.Repo, run.Commit)
	if r.Delay > 0 {
		t := time.NewTimer(r.Delay)
		defer t.Stop()
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-t.C:
		}
	}
	if err := r.record("done", run.ID); err != nil {
		return nil, err
	}
	return map[string]string{r.StageName: "done"}, nil
}

func (r *Recorder) record(what, runID string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	f, err := os.OpenFile(r.File, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	// One write of one short line with O_APPEND: lines from concurrent
	// processes never interleave.
	if _, err := fmt.Fprintf(f, "%s %s %s\n", what, runID, r.StageName); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// ParseStages parses the hidden flag's value "record:FILE:N:DELAY": N
// recorder stages named record-1..record-N, each waiting DELAY.
func ParseStages(spec string) ([]pipelines.Stage, error) {
	parts := strings.Split(spec, ":")
	if len(parts) != 4 || parts[0] != "record" || parts[1] == "" {
		return nil, fmt.Errorf("test stages %q: want record:FILE:N:DELAY", spec)
	}
	n, err := strconv.Atoi(parts[2])
	if err != nil || n < 1 || n > 20 {
		return nil, fmt.Errorf("test stages %q: N must be 1..20", spec)
	}
	d, err := time.ParseDuration(parts[3])
	if err != nil || d < 0 {
		return nil, fmt.Errorf("test stages %q: bad delay", spec)
	}
	var out []pipelines.Stage
	for i := 1; i <= n; i++ {
		out = append(out, &Recorder{StageName: fmt.Sprintf("record-%d", i), File: parts[1], Delay: d})
	}
	return out, nil
}

// Calls is what a record file says: for each "RUN STAGE", how many times
// the stage started and finished.
type Calls map[string]struct{ Starts, Dones int }

// ReadCalls reads a record file.
func ReadCalls(file string) (Calls, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	out := Calls{}
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		f := strings.Fields(line)
		if len(f) != 3 {
			continue
		}
		key := f[1] + " " + f[2]
		c := out[key]
		switch f[0] {
		case "start":
			c.Starts++
		case "done":
			c.Dones++
		}
		out[key] = c
	}
	return out, nil
}
