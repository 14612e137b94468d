package chart

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gantry-dev/gantry/internal/testenv"
	"github.com/gantry-dev/gantry/pipelines"
)

// funcStage is a stage made of a function.
type funcStage struct {
	name string
	run  func(context.Context, pipelines.Run, io.Writer) (map[string]string, error)
}

func (s funcStage) Name() string { return s.name }
func (s funcStage) Run(ctx context.Context, r pipelines.Run, w io.Writer) (map[string]string, error) {
	return s.run(ctx, r, w)
}

// TestChartNATSStageRunsAgain executes one stage of a run twice under the
// chart's worker user: its first execution ends in a transient error (as
// when a NATS failover cut off its result write), the second passes. The
// run must pass, with the second execution's log readable by the
// receiver. Before, the second execution stored its log under the first
// one's object name; replacing an object purges the old chunks, which
// the worker's user may not do, and the refused purge made the log write
// wait out the time limit it shared with the result write. The result
// was never recorded, the run was handed back and its stage executed
// again, for ever: the run stayed "running" (this test failed, and so
// did TestChartNATSCluster about every other time).
func TestChartNATSStageRunsAgain(t *testing.T) {
	env := testenv.Require(t)
	cn := startChartNATS(t, env.NATSServer, chartDocs(t))
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := pipelines.Setup(ctx, pipelines.Options{Connection: cn.conn("admin"), Replicas: 1, AckWait: 5 * time.Second}, nil); err != nil {
		t.Fatal(err)
	}
	open := func(role string) *pipelines.Queue {
		q, err := pipelines.Open(ctx, pipelines.Options{Connection: cn.conn(role), Provisioned: true, AckWait: 5 * time.Second, Sealer: testSealer})
		if err != nil {
			t.Fatalf("%s: open the queue: %v", role, err)
		}
		t.Cleanup(q.Close)
		return q
	}
	recv, work := open("receiver"), open("worker")
	var executions atomic.Int32
	flaky := funcStage{"flaky", func(_ context.Context, r pipelines.Run, log io.Writer) (map[string]string, error) {
		n := executions.Add(1)
		fmt.Fprintf(log, "execution %d of run %s\n", n, r.ID)
		if n == 1 {
			return nil, errors.New("registry unavailable")
		}
		return nil, nil
	}}
	wctx, stopWork := context.WithCancel(ctx)
	workDone := make(chan error, 1)
	go func() {
		workDone <- work.Work(wctx, pipelines.WorkerOptions{Stages: []pipelines.Stage{flaky}, RetryDelay: 100 * time.Millisecond, Origin: testOrigin})
	}()
	t.Cleanup(func() { stopWork(); <-workDone })

	e, err := recv.Enqueue(ctx, pipelines.Request{DeliveryID: "again-1", Repo: "acme/app", CloneURL: "https://github.com/acme/app.git", Ref: "refs/heads/main", Commit: strings.Repeat("c", 40)})
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	var r *pipelines.Run
	for {
		r, err = recv.Get(ctx, e.RunID)
		if err == nil && r.State.Final() {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("run %s not final 30s after it was queued (%d executions of its stage): %+v, %v", e.RunID, executions.Load(), r, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if r.State != pipelines.StatePassed || len(r.Stages) != 1 || r.Stages[0].Attempts != 2 || executions.Load() != 2 {
		t.Fatalf("run %s: %s %q, stages %+v, %d executions; want passed on the second", r.ID, r.State, r.Message, r.Stages, executions.Load())
	}
	b, err := recv.StageLog(ctx, r.ID, "flaky")
	if err != nil || !strings.Contains(string(b), "execution 2 of run "+r.ID) {
		t.Fatalf("log of the second execution: %q, %v", b, err)
	}
}
