package pipelines_test

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gantry-dev/gantry/internal/natstest"
	"github.com/gantry-dev/gantry/internal/testenv"
	"github.com/gantry-dev/gantry/internal/wait"
	"github.com/gantry-dev/gantry/pipelines"
	"github.com/gantry-dev/gantry/pipelines/pipelinestest"
)

// backend opens queues on one JetStream server: the embedded one, or an
// external nats-server process. Every test runs against both.
type backend struct {
	name string
	// open returns options reaching the server; dataDir is the embedded
	// server's store (the same dir reopens the same data).
	opts func(dataDir string) pipelines.Options
}

func backends(t *testing.T) []backend {
	env := testenv.Require(t)
	return []backend{
		{"embedded", func(dir string) pipelines.Options {
			return pipelines.Options{Connection: pipelines.Connection{DataDir: dir}}
		}},
		{"external", func() func(string) pipelines.Options {
			var once sync.Once
			var url string
			return func(string) pipelines.Options {
				once.Do(func() { url = natstest.Start(t, env.NATSServer, "").URL })
				return pipelines.Options{Connection: pipelines.Connection{URL: url}}
			}
		}()},
	}
}

// eachBackend runs f as a subtest per backend, with a fresh server each.
func eachBackend(t *testing.T, f func(t *testing.T, b backend)) {
	for _, b := range backends(t) {
		t.Run(b.name, func(t *testing.T) {
			// A fresh external server per subtest keeps tests independent.
			if b.name == "external" {
				env := testenv.Require(t)
				url := natstest.Start(t, env.NATSServer, "").URL
				b.opts = func(string) pipelines.Options {
					return pipelines.Options{Connection: pipelines.Connection{URL: url}}
				}
			}
			f(t, b)
		})
	}
}

func open(t *testing.T, b backend, dir string, mod func(*pipelines.Options)) *pipelines.Queue {
	t.Helper()
	o := b.opts(dir)
	o.AckWait = 2 * time.Second
	o.MaxDeliver = 3
	o.CancelSuperseded = true
	o.Sealer = testSealer
	if mod != nil {
		mod(&o)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	q, err := pipelines.Open(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(q.Close)
	return q
}

// work runs workers until the test ends (or stop is called).
func work(t *testing.T, q *pipelines.Queue, opts pipelines.WorkerOptions) (stop func()) {
	t.Helper()
	if opts.RetryDelay == 0 {
		opts.RetryDelay = 50 * time.Millisecond
	}
	if opts.Origin == nil {
		opts.Origin = testOrigin
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := q.Work(ctx, opts); err != nil {
			t.Errorf("Work: %v", err)
		}
	}()
	var once sync.Once
	stop = func() { once.Do(func() { cancel(); <-done }) }
	t.Cleanup(stop)
	return stop
}

var deliveries atomic.Int64

// testSealer seals the runs of these tests; testOrigin lets workers
// execute them (every repo allowed, clone URLs on github.com).
var (
	testKey    = ed25519.NewKeyFromSeed(make([]byte, ed25519.SeedSize))
	testSealer = pipelines.NewSealer(testKey)
	testOrigin = &pipelines.OriginPolicy{Keys: []ed25519.PublicKey{testSealer.Public()}, Allowed: func(string, string) string { return "" }}
)

func request(repo, ref string) pipelines.Request {
	n := deliveries.Add(1)
	return pipelines.Request{
		DeliveryID: fmt.Sprintf("delivery-%d-%d", time.Now().UnixNano(), n),
		Repo:       repo, Ref: ref, Commit: fmt.Sprintf("%040x", n), Pusher: "octocat",
		CloneURL: "https://github.com/" + repo + ".git",
	}
}

func enqueue(t *testing.T, q *pipelines.Queue, req pipelines.Request) pipelines.Enqueued {
	t.Helper()
	e, err := q.Enqueue(context.Background(), req)
	if err != nil {
		t.Fatalf("Enqueue: %v", err)
	}
	return e
}

// waitFor polls run id until cond holds (bounded; this is not a timing
// assertion, only a guard against hanging forever).
func waitFor(t *testing.T, q *pipelines.Queue, id string, what string, cond func(*pipelines.Run) bool) *pipelines.Run {
	t.Helper()
	return wait.For(t, 60*time.Second, "run "+id+" to become "+what, func() (*pipelines.Run, error) {
		r, err := q.Get(context.Background(), id)
		if err != nil {
			return nil, err
		}
		if !cond(r) {
			return nil, fmt.Errorf("last record: %+v", r)
		}
		return r, nil
	})
}

// waitDrained waits until the work queue holds no message.
func waitDrained(t *testing.T, q *pipelines.Queue, what string) {
	t.Helper()
	wait.Until(t, 30*time.Second, what, func() error {
		n, err := q.Depth(context.Background())
		if err == nil && n != 0 {
			err = fmt.Errorf("queue depth %d", n)
		}
		return err
	})
}

func final(r *pipelines.Run) bool { return r.State.Final() }

// funcStage adapts a function to a stage.
type funcStage struct {
	name string
	f    func(ctx context.Context, run pipelines.Run, log io.Writer) (map[string]string, error)
}

func (s funcStage) Name() string { return s.name }
func (s funcStage) Run(ctx context.Context, run pipelines.Run, log io.Writer) (map[string]string, error) {
	return s.f(ctx, run, log)
}

func recorders(t *testing.T, n int, delay time.Duration) ([]pipelines.Stage, string) {
	file := filepath.Join(t.TempDir(), "calls")
	stages, err := pipelinestest.ParseStages(fmt.Sprintf("record:%s:%d:%s", file, n, delay))
	if err != nil {
		t.Fatal(err)
	}
	return stages, file
}

func calls(t *testing.T, file string) pipelinestest.Calls {
	t.Helper()
	c, err := pipelinestest.ReadCalls(file)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestRunPassesThroughEveryStage(t *testing.T) {
	eachBackend(t, func(t *testing.T, b backend) {
		q := open(t, b, t.TempDir(), nil)
		stages, file := recorders(t, 3, 0)
		work(t, q, pipelines.WorkerOptions{Concurrency: 2, Stages: stages})
		req := request("acme/app", "refs/heads/main")
		e := enqueue(t, q, req)
		if e.Duplicate || e.State != pipelines.StateQueued || !pipelines.ValidRunID(e.RunID) {
			t.Fatalf("Enqueue: %+v", e)
		}
		r := waitFor(t, q, e.RunID, "final", final)
		if r.State != pipelines.StatePassed {
			t.Fatalf("state %s (%s)", r.State, r.Message)
		}
		if r.Repo != req.Repo || r.Ref != req.Ref || r.Commit != req.Commit || r.DeliveryID != req.DeliveryID || r.Pusher != "octocat" {
			t.Fatalf("record does not match the request: %+v", r)
		}
		if r.StartedAt == nil || r.FinishedAt == nil || r.FinishedAt.Before(*r.StartedAt) || r.Attempts != 1 {
			t.Fatalf("timings/attempts: %+v", r)
		}
		if len(r.Stages) != 3 {
			t.Fatalf("stages: %+v", r.Stages)
		}
		for i, s := range r.Stages {
			if s.Name != fmt.Sprintf("record-%d", i+1) || s.State != pipelines.StatePassed || s.Attempts != 1 ||
				s.StartedAt == nil || s.FinishedAt == nil || s.LogBytes == 0 {
				t.Errorf("stage %d: %+v", i, s)
			}
			if r.Outputs[s.Name] != "done" {
				t.Errorf("output of %s not merged: %v", s.Name, r.Outputs)
			}
		}
		for key, c := range calls(t, file) {
			if c.Starts != 1 || c.Dones != 1 {
				t.Errorf("%s: %+v, want exactly one call", key, c)
			}
		}
		var logs strings.Builder
		if err := q.WriteLogs(context.Background(), &logs, r, ""); err != nil {
			t.Fatal(err)
		}
		for _, want := range []string{"==> stage record-1 (passed)", "==> stage record-3 (passed)", "stage record-2 of run " + r.ID} {
			if !strings.Contains(logs.String(), want) {
				t.Errorf("logs lack %q:\n%s", want, logs.String())
			}
		}
	})
}

func TestDuplicateDeliveryNeverStartsASecondRun(t *testing.T) {
	eachBackend(t, func(t *testing.T, b backend) {
		q := open(t, b, t.TempDir(), nil)
		req := request("acme/dup", "refs/heads/main")
		first := enqueue(t, q, req)
		for range 3 {
			again := enqueue(t, q, req)
			if !again.Duplicate || again.RunID != first.RunID {
				t.Fatalf("redelivery: %+v, want duplicate of %s", again, first.RunID)
			}
		}
		stages, file := recorders(t, 1, 0)
		work(t, q, pipelines.WorkerOptions{Stages: stages})
		waitFor(t, q, first.RunID, "final", final)
		// A redelivery after the run finished still points at it.
		again := enqueue(t, q, req)
		if !again.Duplicate || again.RunID != first.RunID || again.State != pipelines.StatePassed {
			t.Fatalf("late redelivery: %+v", again)
		}
		page, err := q.List(context.Background(), pipelines.Filter{Repo: "acme/dup"})
		if err != nil {
			t.Fatal(err)
		}
		if len(page.Runs) != 1 {
			t.Fatalf("%d runs for one delivery", len(page.Runs))
		}
		if c := calls(t, file)[first.RunID+" record-1"]; c.Starts != 1 {
			t.Fatalf("stage ran %d times", c.Starts)
		}
	})
}

func TestCancelByAPI(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, b backend) {
		q := open(t, b, t.TempDir(), nil)
		started := make(chan struct{}, 1)
		var second atomic.Int32
		stages := []pipelines.Stage{
			funcStage{"wait", func(ctx context.Context, _ pipelines.Run, log io.Writer) (map[string]string, error) {
				fmt.Fprintln(log, "waiting")
				started <- struct{}{}
				<-ctx.Done()
				return nil, ctx.Err()
			}},
			funcStage{"after", func(context.Context, pipelines.Run, io.Writer) (map[string]string, error) {
				second.Add(1)
				return nil, nil
			}},
		}
		work(t, q, pipelines.WorkerOptions{Stages: stages})
		e := enqueue(t, q, request("acme/cancel", "refs/heads/main"))
		<-started
		if _, err := q.Cancel(context.Background(), e.RunID, "cancelled by alice"); err != nil {
			t.Fatal(err)
		}
		// The worker records the cancelled stage's end (and its log) after
		// the stage returned.
		r := waitFor(t, q, e.RunID, "stage cancelled", func(r *pipelines.Run) bool {
			return len(r.Stages) == 2 && r.Stages[0].State == pipelines.StateCancelled && r.Stages[0].LogBytes > 0
		})
		if r.State != pipelines.StateCancelled || r.Message != "cancelled by alice" || r.Stages[1].State != pipelines.StateCancelled {
			t.Fatalf("after cancel: %+v", r)
		}
		if _, err := q.Cancel(context.Background(), e.RunID, ""); !errors.Is(err, pipelines.ErrFinal) {
			t.Fatalf("second cancel: %v, want ErrFinal", err)
		}
		if _, err := q.Cancel(context.Background(), "00000000000000000000", ""); !errors.Is(err, pipelines.ErrNotFound) {
			t.Fatalf("cancel unknown: %v", err)
		}
		if _, err := q.Cancel(context.Background(), "../../etc", ""); !errors.Is(err, pipelines.ErrNotFound) {
			t.Fatalf("cancel bad id: %v", err)
		}
		// The cancelled run's message was acked: the later stage never runs.
		if second.Load() != 0 {
			t.Fatal("stage after a cancelled one ran")
		}
		var logs strings.Builder
		if err := q.WriteLogs(context.Background(), &logs, r, "wait"); err != nil || !strings.Contains(logs.String(), "waiting") {
			t.Fatalf("log of the cancelled stage: %v %q", err, logs.String())
		}
	})
}

func TestFailuresErrorsAndRetries(t *testing.T) {
	t.Parallel()
	type want struct {
		state     pipelines.State
		stages    []pipelines.State
		attempts  int
		firstRuns int32
		msg       string
	}
	tests := []struct {
		name string
		// second is the behaviour of stage two on attempt n (1-based).
		second func(n int32) error
		want   want
	}{
		{"verdict fails without retry", func(int32) error { return pipelines.Fail("3 CRITICAL vulnerabilities") },
			want{pipelines.StateFailed, []pipelines.State{pipelines.StatePassed, pipelines.StateFailed, pipelines.StateCancelled}, 1, 1, "3 CRITICAL"}},
		{"transient error retried then passes, earlier stage not rerun", func(n int32) error {
			if n < 3 {
				return errors.New("registry unreachable")
			}
			return nil
		}, want{pipelines.StatePassed, []pipelines.State{pipelines.StatePassed, pipelines.StatePassed, pipelines.StatePassed}, 3, 1, ""}},
		{"persistent error is dead-lettered", func(int32) error { return errors.New("buildkitd gone") },
			want{pipelines.StateError, []pipelines.State{pipelines.StatePassed, pipelines.StateError, pipelines.StateCancelled}, 3, 1, "gave up after 3 attempts"}},
		{"panic is an error, not a crash", func(n int32) error {
			if n == 1 {
				panic("boom")
			}
			return nil
		}, want{pipelines.StatePassed, []pipelines.State{pipelines.StatePassed, pipelines.StatePassed, pipelines.StatePassed}, 2, 1, ""}},
	}
	eachBackend(t, func(t *testing.T, b backend) {
		for _, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				q := open(t, b, t.TempDir(), nil)
				var first, second atomic.Int32
				stages := []pipelines.Stage{
					funcStage{"one", func(context.Context, pipelines.Run, io.Writer) (map[string]string, error) {
						first.Add(1)
						return map[string]string{"digest": "sha256:abc"}, nil
					}},
					funcStage{"two", func(_ context.Context, run pipelines.Run, _ io.Writer) (map[string]string, error) {
						if run.Outputs["digest"] != "sha256:abc" {
							return nil, pipelines.Fail("output of stage one not passed on: %v", run.Outputs)
						}
						return nil, tc.second(second.Add(1))
					}},
					funcStage{"three", func(context.Context, pipelines.Run, io.Writer) (map[string]string, error) { return nil, nil }},
				}
				work(t, q, pipelines.WorkerOptions{Stages: stages})
				e := enqueue(t, q, request("acme/retry", "refs/heads/main"))
				r := waitFor(t, q, e.RunID, "final", final)
				if r.State != tc.want.state || r.Attempts != tc.want.attempts || first.Load() != tc.want.firstRuns ||
					!strings.Contains(r.Message, tc.want.msg) {
					t.Fatalf("run %s attempts %d (stage one ran %d): %q", r.State, r.Attempts, first.Load(), r.Message)
				}
				for i, s := range r.Stages {
					if s.State != tc.want.stages[i] {
						t.Errorf("stage %s: %s, want %s (%s)", s.Name, s.State, tc.want.stages[i], s.Message)
					}
				}
				if tc.want.state == pipelines.StateError {
					page, err := q.List(context.Background(), pipelines.Filter{State: pipelines.StateError})
					if err != nil || len(page.Runs) != 1 {
						t.Fatalf("error runs: %v %+v", err, page)
					}
					if n := q.DeadLetters(context.Background()); n != 1 {
						t.Fatalf("dead letters: %d", n)
					}
				}
			})
		}
	})
}

func TestWorkerShutdownHandsRunsBack(t *testing.T) {
	eachBackend(t, func(t *testing.T, b backend) {
		dir := t.TempDir()
		q := open(t, b, dir, nil)
		started := make(chan struct{}, 1)
		var runs atomic.Int32
		slow := funcStage{"slow", func(ctx context.Context, _ pipelines.Run, _ io.Writer) (map[string]string, error) {
			if runs.Add(1) == 1 {
				started <- struct{}{}
				<-ctx.Done()
				return nil, ctx.Err()
			}
			return nil, nil
		}}
		stop := work(t, q, pipelines.WorkerOptions{Stages: []pipelines.Stage{slow}})
		e := enqueue(t, q, request("acme/stop", "refs/heads/main"))
		<-started
		stop()
		r, err := q.Get(context.Background(), e.RunID)
		if err != nil || r.State != pipelines.StateQueued || r.Stages[0].State != pipelines.StateQueued || !strings.Contains(r.Message, "interrupted") {
			t.Fatalf("after shutdown: %v %+v", err, r)
		}
		work(t, q, pipelines.WorkerOptions{Stages: []pipelines.Stage{slow}})
		r = waitFor(t, q, e.RunID, "final", final)
		if r.State != pipelines.StatePassed || r.Stages[0].Attempts != 2 {
			t.Fatalf("resumed run: %+v", r)
		}
	})
}

func TestStateSurvivesRestart(t *testing.T) {
	b := backends(t)[0] // the embedded server's data dir is what is under test
	dir := t.TempDir()
	q := open(t, b, dir, nil)
	req := request("acme/restart", "refs/heads/main")
	e := enqueue(t, q, req)
	q.Close()

	q = open(t, b, dir, nil)
	if again := enqueue(t, q, req); !again.Duplicate || again.RunID != e.RunID {
		t.Fatalf("replay guard lost on restart: %+v", again)
	}
	stages, _ := recorders(t, 1, 0)
	work(t, q, pipelines.WorkerOptions{Stages: stages})
	if r := waitFor(t, q, e.RunID, "final", final); r.State != pipelines.StatePassed {
		t.Fatalf("run queued before restart: %s", r.State)
	}
}

func TestDeliveryGuardExpires(t *testing.T) { t.Parallel(); eachBackend(t, testDeliveryGuardExpires) }

func testDeliveryGuardExpires(t *testing.T, b backend) {
	q := open(t, b, t.TempDir(), func(o *pipelines.Options) { o.DeliveryTTL = time.Second })
	req := request("acme/ttl", "refs/heads/main")
	first := enqueue(t, q, req)
	e := wait.For(t, 30*time.Second, "the delivery id to be forgotten after its 1s TTL", func() (pipelines.Enqueued, error) {
		e := enqueue(t, q, req)
		if e.Duplicate {
			return e, fmt.Errorf("still a duplicate of %s", e.RunID)
		}
		return e, nil
	})
	if e.RunID == first.RunID {
		t.Fatal("new run reused the old id")
	}
}

func TestListFiltersAndPages(t *testing.T) { eachBackend(t, testListFiltersAndPages) }

func testListFiltersAndPages(t *testing.T, b backend) {
	q := open(t, b, t.TempDir(), func(o *pipelines.Options) { o.CancelSuperseded = false })
	var ids []string
	for i := range 7 {
		repo := "acme/a"
		if i%2 == 1 {
			repo = "acme/b"
		}
		// No pause between them: ids of one process sort by creation
		// even within a millisecond (NewRunID).
		ids = append(ids, enqueue(t, q, request(repo, "refs/heads/main")).RunID)
	}
	if _, err := q.Cancel(context.Background(), ids[0], ""); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	var got []string
	cursor := ""
	for pages := 0; ; pages++ {
		p, err := q.List(ctx, pipelines.Filter{Repo: "ACME/A", Limit: 2, Before: cursor})
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range p.Runs {
			got = append(got, r.ID)
		}
		if p.Next == "" {
			break
		}
		cursor = p.Next
		if pages > 5 {
			t.Fatal("pagination does not end")
		}
	}
	want := []string{ids[6], ids[4], ids[2], ids[0]}
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("repo acme/a pages: %v, want %v", got, want)
	}
	p, err := q.List(ctx, pipelines.Filter{State: pipelines.StateCancelled})
	if err != nil || len(p.Runs) != 1 || p.Runs[0].ID != ids[0] {
		t.Fatalf("state filter: %v %+v", err, p)
	}
}

func TestCorruptQueueMessageIsDropped(t *testing.T) { eachBackend(t, testCorruptQueueMessageIsDropped) }

func testCorruptQueueMessageIsDropped(t *testing.T, b backend) {
	q := open(t, b, t.TempDir(), nil)
	stages, file := recorders(t, 1, 0)
	if err := q.PublishRaw(context.Background(), []byte("{not json")); err != nil {
		t.Fatal(err)
	}
	if err := q.PublishRaw(context.Background(), []byte(`{"runId":"../../../x"}`)); err != nil {
		t.Fatal(err)
	}
	work(t, q, pipelines.WorkerOptions{Stages: stages})
	e := enqueue(t, q, request("acme/after-junk", "refs/heads/main"))
	if r := waitFor(t, q, e.RunID, "final", final); r.State != pipelines.StatePassed {
		t.Fatalf("run after junk: %s", r.State)
	}
	if len(calls(t, file)) != 1 {
		t.Fatalf("calls: %v", calls(t, file))
	}
	waitDrained(t, q, "the junk messages to be removed")
}

func TestSecondDeliveryOfARunningRunWaitsForItsLease(t *testing.T) {
	t.Parallel()
	eachBackend(t, testSecondDeliveryOfARunningRunWaitsForItsLease)
}

func testSecondDeliveryOfARunningRunWaitsForItsLease(t *testing.T, b backend) {
	leased := make(chan struct{}, 4)
	q := open(t, b, t.TempDir(), func(o *pipelines.Options) {
		o.Logger = slog.New(&signalHandler{msg: "run is leased by another worker; retrying later", seen: leased})
	})
	release := make(chan struct{})
	started := make(chan struct{}, 4)
	var starts, concurrent, maxConcurrent atomic.Int32
	slow := funcStage{"slow", func(ctx context.Context, _ pipelines.Run, _ io.Writer) (map[string]string, error) {
		starts.Add(1)
		n := concurrent.Add(1)
		defer concurrent.Add(-1)
		if n > maxConcurrent.Load() {
			maxConcurrent.Store(n)
		}
		started <- struct{}{}
		select {
		case <-release:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		return nil, nil
	}}
	work(t, q, pipelines.WorkerOptions{Concurrency: 3, Stages: []pipelines.Stage{slow}})
	e := enqueue(t, q, request("acme/lease", "refs/heads/main"))
	<-started
	// A second message for the same run (as a crash-recovery redelivery
	// can produce): it must not run the stage beside the first.
	if err := q.PublishRaw(context.Background(), []byte(`{"runId":"`+e.RunID+`"}`)); err != nil {
		t.Fatal(err)
	}
	// A worker has taken the duplicate and found the run leased: only
	// then does the first delivery finish.
	select {
	case <-leased:
	case <-time.After(30 * time.Second):
		t.Fatal("no worker took the duplicate message up within 30s")
	}
	close(release)
	if r := waitFor(t, q, e.RunID, "final", final); r.State != pipelines.StatePassed {
		t.Fatalf("run: %+v", r)
	}
	waitDrained(t, q, "the duplicate message to settle")
	if starts.Load() != 1 || maxConcurrent.Load() != 1 {
		t.Fatalf("stage started %d times, %d at once", starts.Load(), maxConcurrent.Load())
	}
}

func TestDataDirIsExclusive(t *testing.T) {
	b := backends(t)[0]
	dir := t.TempDir()
	open(t, b, dir, nil)
	_, err := pipelines.Open(context.Background(), b.opts(dir))
	if err == nil || !strings.Contains(err.Error(), "in use by another gantry") {
		t.Fatalf("second embedded server on one data dir: %v", err)
	}
}

// TestStuckStageReleasesItsLease: a stage that ignores its cancellation
// when its worker stops does not keep the run leased for ever; once its
// worker stopped renewing (one lease period after the cancel), another
// worker executes the run. Before, the heartbeat renewed the lease for as
// long as the stuck stage ran, and the run waited with it.
func TestStuckStageReleasesItsLease(t *testing.T) {
	t.Parallel()
	b := backends(t)[0]
	q := open(t, b, t.TempDir(), nil)
	started, release := make(chan struct{}), make(chan struct{})
	var calls atomic.Int32
	stage := funcStage{"stuck", func(context.Context, pipelines.Run, io.Writer) (map[string]string, error) {
		if calls.Add(1) == 1 {
			close(started)
			<-release // ignores its context
		}
		return nil, nil
	}}
	ctx, stopA := context.WithCancel(context.Background())
	doneA := make(chan error, 1)
	go func() {
		doneA <- q.Work(ctx, pipelines.WorkerOptions{Stages: []pipelines.Stage{stage}, Origin: testOrigin})
	}()
	t.Cleanup(func() {
		stopA()
		select {
		case <-release:
		default:
			close(release)
		}
		<-doneA
	})
	e := enqueue(t, q, request("acme/stuck", "refs/heads/main"))
	<-started
	stopA() // worker A stops; its stage does not
	work(t, q, pipelines.WorkerOptions{Stages: []pipelines.Stage{stage}})
	r := waitFor(t, q, e.RunID, "final", final)
	if r.State != pipelines.StatePassed || calls.Load() != 2 {
		t.Fatalf("run %s %q after %d executions; want passed by the second worker", r.State, r.Message, calls.Load())
	}
	close(release)
	if err := <-doneA; err != nil {
		t.Fatal(err)
	}
	doneA <- nil // for the cleanup
	// The stuck execution, ending late, left the record of the second
	// one as it was.
	r, err := q.Get(context.Background(), e.RunID)
	if err != nil {
		t.Fatal(err)
	}
	if s := r.Stages[0]; r.State != pipelines.StatePassed || s.State != pipelines.StatePassed || s.Attempts != 2 || s.Log != e.RunID+"/stuck/2" {
		t.Fatalf("after the stuck execution ended: %s, stage %+v", r.State, s)
	}
}

// signalHandler is a slog.Handler that sends on seen each time a record
// with message msg is logged: the worker's own account that it processed
// something the test cannot otherwise observe.
type signalHandler struct {
	msg  string
	seen chan<- struct{}
}

func (h *signalHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h *signalHandler) Handle(_ context.Context, r slog.Record) error {
	if r.Message == h.msg {
		select {
		case h.seen <- struct{}{}:
		default:
		}
	}
	return nil
}
func (h *signalHandler) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h *signalHandler) WithGroup(string) slog.Handler      { return h }
