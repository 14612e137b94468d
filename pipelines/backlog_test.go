package pipelines_test

import (
	"context"
	"fmt"
	"io"
	"testing"
	"time"

	"github.com/gantry-dev/gantry/internal/wait"
	"github.com/gantry-dev/gantry/pipelines"
)

func waitBacklog(t *testing.T, b *pipelines.Backlog, repo string, want int) {
	t.Helper()
	wait.Until(t, 15*time.Second, fmt.Sprintf("Queued(%s) = %d", repo, want), func() error {
		n, err := b.Queued(context.Background(), repo)
		if err != nil {
			t.Fatalf("Queued(%s): %v", repo, err)
		}
		if n != want {
			return fmt.Errorf("Queued(%s) = %d", repo, n)
		}
		return nil
	})
}

// TestBacklogCountsQueuedRunsPerRepo follows runs queued by another
// connection (as another receiver process would) through queued, running,
// cancelled and passed.
func TestBacklogCountsQueuedRunsPerRepo(t *testing.T) {
	eachBackend(t, func(t *testing.T, b backend) {
		q := open(t, b, t.TempDir(), nil)
		watcher := q
		if b.name == "external" {
			watcher = open(t, b, "", nil) // a second process on the same server
		}
		// Runs queued before the watch starts count too.
		first := enqueue(t, q, request("acme/app", "refs/heads/a"))
		bl, err := watcher.WatchBacklog(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		waitBacklog(t, bl, "acme/app", 1)
		second := enqueue(t, q, request("acme/app", "refs/heads/b"))
		enqueue(t, q, request("Acme/App", "refs/heads/c"))
		enqueue(t, q, request("acme/other", "refs/heads/main"))
		waitBacklog(t, bl, "ACME/app", 3)
		waitBacklog(t, bl, "acme/other", 1)
		waitBacklog(t, bl, "nobody/none", 0)

		if _, err := q.Cancel(context.Background(), first.RunID, "test"); err != nil {
			t.Fatal(err)
		}
		waitBacklog(t, bl, "acme/app", 2)

		// Runs a worker takes leave the backlog; a blocked stage keeps them
		// running, not queued.
		release := make(chan struct{})
		stop := work(t, q, pipelines.WorkerOptions{Concurrency: 4, Stages: []pipelines.Stage{funcStage{"hold", func(ctx context.Context, _ pipelines.Run, _ io.Writer) (map[string]string, error) {
			select {
			case <-release:
			case <-ctx.Done():
			}
			return nil, nil
		}}}})
		waitBacklog(t, bl, "acme/app", 0)
		waitBacklog(t, bl, "acme/other", 0)
		close(release)
		waitFor(t, q, second.RunID, "passed", final)
		stop()

		// After the watch ends, the count fails rather than reading 0.
		if err := bl.Close(); err != nil {
			t.Fatal(err)
		}
		wait.Until(t, 10*time.Second, "a closed backlog to fail", func() error {
			if n, err := bl.Queued(context.Background(), "acme/app"); err == nil {
				return fmt.Errorf("it still answers %d", n)
			}
			return nil
		})
	})
}
