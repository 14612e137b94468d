package pipelines_test

import (
	"context"
	"fmt"
	"io"
	"strings"
	"testing"

	"github.com/gantry-dev/gantry/pipelines"
)

// embedded opens a queue on an embedded JetStream server (no daemon needed).
func embedded(t *testing.T, mod func(*pipelines.Options)) *pipelines.Queue {
	t.Helper()
	return open(t, backend{"embedded", func(dir string) pipelines.Options {
		return pipelines.Options{Connection: pipelines.Connection{DataDir: dir}}
	}}, t.TempDir(), mod)
}

func sha(n int) string { return fmt.Sprintf("%040x", n) }

// TestReplayedPushIsADuplicate: a push body posted again under a fresh
// delivery id (the signature covers the body only) is answered with the
// run of the first delivery; no second run exists. A force push back to
// the same commit is another push (its before differs) and is queued.
func TestReplayedPushIsADuplicate(t *testing.T) {
	q := embedded(t, nil)
	a := pipelines.Request{DeliveryID: "d-a", Repo: "acme/replay", Ref: "refs/heads/main", Before: sha(0), Commit: sha(1),
		CloneURL: "https://github.com/acme/replay.git"}
	first := enqueue(t, q, a)
	b := a
	b.DeliveryID, b.Before, b.Commit = "d-b", sha(1), sha(2)
	second := enqueue(t, q, b)

	replay := a
	replay.DeliveryID = "d-replay"
	again := enqueue(t, q, replay)
	if !again.Duplicate || !again.SamePush || again.RunID != first.RunID {
		t.Fatalf("replayed body under a new delivery id: %+v, want a duplicate of %s", again, first.RunID)
	}
	// GitHub's redelivery of the replayed delivery: the same answer.
	if e := enqueue(t, q, replay); !e.Duplicate || e.RunID != first.RunID {
		t.Fatalf("redelivery of the replay: %+v", e)
	}
	// Case of the repository name does not make another push.
	replay.DeliveryID, replay.Repo = "d-replay-2", "ACME/replay"
	if e := enqueue(t, q, replay); !e.Duplicate || e.RunID != first.RunID {
		t.Fatalf("replay with the repository name's case changed: %+v", e)
	}
	// The replay did not touch the newer run.
	if r, _ := q.Get(context.Background(), second.RunID); r.State != pipelines.StateQueued {
		t.Fatalf("newer run %s after the replay", r.State)
	}
	force := a
	force.DeliveryID, force.Before = "d-force", sha(2)
	if e := enqueue(t, q, force); e.Duplicate || e.RunID == first.RunID {
		t.Fatalf("a force push back to %s was taken for a replay: %+v", sha(1), e)
	}
	page, err := q.List(context.Background(), pipelines.Filter{Repo: "acme/replay"})
	if err != nil {
		t.Fatal(err)
	}
	if len(page.Runs) != 3 {
		t.Fatalf("%d runs, want 3 (a, b, the force push)", len(page.Runs))
	}
}

// linear orders commits sha(n) by n: a higher n descends from a lower
// one; n >= 100 are unrelated to everything (a rewritten history).
func linear(self string) pipelines.OrderFunc {
	return func(_ context.Context, commits []string) (map[string]pipelines.Order, error) {
		var s int
		fmt.Sscanf(self, "%x", &s)
		out := map[string]pipelines.Order{}
		for _, c := range commits {
			var n int
			fmt.Sscanf(c, "%x", &n)
			switch {
			case s >= 100 || n >= 100:
			case s > n:
				out[c] = pipelines.Newer
			case s < n:
				out[c] = pipelines.Older
			}
		}
		return out, nil
	}
}

// TestSupersedeByAncestryNotArrival: a newer commit cancels a run of an
// older one; a run of an older commit that arrives later (a replay, after
// the push guard forgot it) stops itself and never cancels the newer run
// in flight; unordered histories cancel nothing.
func TestSupersedeByAncestryNotArrival(t *testing.T) {
	q := embedded(t, nil)
	started := make(chan string, 8)
	release := map[string]chan struct{}{}
	for _, c := range []int{1, 2, 3, 100} {
		release[sha(c)] = make(chan struct{})
	}
	stages := []pipelines.Stage{
		funcStage{"checkout", func(ctx context.Context, run pipelines.Run, log io.Writer) (map[string]string, error) {
			s, err := pipelines.Supersede(ctx, run, linear(run.Commit))
			if err != nil {
				return nil, err
			}
			if s.Stopped {
				return nil, pipelines.Fail("%s", s.Reason)
			}
			return nil, nil
		}},
		funcStage{"deploy", func(ctx context.Context, run pipelines.Run, log io.Writer) (map[string]string, error) {
			started <- run.ID
			select {
			case <-release[run.Commit]:
				return nil, nil
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		}},
	}
	work(t, q, pipelines.WorkerOptions{Stages: stages, Concurrency: 4})
	push := func(before, after int, delivery string) string {
		e := enqueue(t, q, pipelines.Request{DeliveryID: delivery, Repo: "acme/order", Ref: "refs/heads/main",
			Before: sha(before), Commit: sha(after), CloneURL: "https://github.com/acme/order.git"})
		return e.RunID
	}
	a := push(0, 1, "a")
	if id := <-started; id != a {
		t.Fatalf("started %s, want %s", id, a)
	}
	b := push(1, 2, "b")
	if id := <-started; id != b {
		t.Fatalf("started %s, want %s", id, b)
	}
	r := waitFor(t, q, a, "cancelled", final)
	if r.State != pipelines.StateCancelled || r.SupersededBy != b || !strings.Contains(r.Message, sha(2)[:12]) {
		t.Fatalf("older run in flight: %s %q by %q, want cancelled by %s", r.State, r.Message, r.SupersededBy, b)
	}

	// The older commit again, as a new push (a replay beyond the push
	// guard's memory, or a force push back): it must not cancel b.
	stale := push(2, 1, "a-again")
	r = waitFor(t, q, stale, "final", final)
	if r.State != pipelines.StateCancelled || r.SupersededBy != b || !strings.Contains(r.Message, "older than commit "+sha(2)[:12]) {
		t.Fatalf("stale run: %s %q by %q", r.State, r.Message, r.SupersededBy)
	}
	// The same commit as b, pushed again: b was first, the copy stops.
	dup := push(9, 2, "b-again")
	if r := waitFor(t, q, dup, "final", final); r.State != pipelines.StateCancelled || r.SupersededBy != b {
		t.Fatalf("second run of b's commit: %s %q", r.State, r.Message)
	}
	// An unrelated history (force push of a rewritten branch): neither
	// cancels the other; the deploy step's fast-forward check decides.
	other := push(2, 100, "rewritten")
	if id := <-started; id != other {
		t.Fatalf("started %s, want %s", id, other)
	}
	if r, _ := q.Get(context.Background(), b); r.State != pipelines.StateRunning {
		t.Fatalf("newer run b after the stale pushes: %s %q", r.State, r.Message)
	}
	close(release[sha(2)])
	close(release[sha(100)])
	for _, id := range []string{b, other} {
		if r := waitFor(t, q, id, "final", final); r.State != pipelines.StatePassed {
			t.Fatalf("run %s: %s %q", id, r.State, r.Message)
		}
	}
}

func TestSupersedeCanBeTurnedOff(t *testing.T) {
	q := embedded(t, func(o *pipelines.Options) { o.CancelSuperseded = false })
	got := make(chan pipelines.Supersession, 2)
	stage := funcStage{"checkout", func(ctx context.Context, run pipelines.Run, log io.Writer) (map[string]string, error) {
		s, err := pipelines.Supersede(ctx, run, linear(run.Commit))
		got <- s
		return nil, err
	}}
	a := enqueue(t, q, pipelines.Request{DeliveryID: "a", Repo: "acme/keep", Ref: "refs/heads/main", Commit: sha(1), CloneURL: "https://github.com/acme/keep.git"})
	enqueue(t, q, pipelines.Request{DeliveryID: "b", Repo: "acme/keep", Ref: "refs/heads/main", Commit: sha(2), CloneURL: "https://github.com/acme/keep.git"})
	work(t, q, pipelines.WorkerOptions{Stages: []pipelines.Stage{stage}, Concurrency: 1})
	for range 2 {
		if s := <-got; s.Stopped || len(s.Cancelled) > 0 {
			t.Fatalf("supersede with cancelSuperseded off: %+v", s)
		}
	}
	if r := waitFor(t, q, a.RunID, "final", final); r.State != pipelines.StatePassed {
		t.Fatalf("older run %s with cancelSuperseded off", r.State)
	}
}
