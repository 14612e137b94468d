package pipelines_test

import (
	"context"
	"encoding/json"
	"io"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/gantry-dev/gantry/internal/natstest"
	"github.com/gantry-dev/gantry/internal/testenv"
	"github.com/gantry-dev/gantry/pipelines"
)

// TestRecordRewrittenMidRun: an attacker with NATS access rewrites the
// clone URL of a run while its first stage runs. The next stage must not
// see the rewritten record, and the run ends rejected, never executed
// further.
func TestRecordRewrittenMidRun(t *testing.T) {
	env := testenv.Require(t)
	url := natstest.Start(t, env.NATSServer, "").URL
	q := open(t, backend{opts: func(string) pipelines.Options {
		return pipelines.Options{Connection: pipelines.Connection{URL: url}}
	}}, "", nil)
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	kv, err := js.KeyValue(context.Background(), "gantry_runs")
	if err != nil {
		t.Fatal(err)
	}
	var later atomic.Int32
	var sawEvil atomic.Bool
	stages := []pipelines.Stage{
		funcStage{"checkout", func(ctx context.Context, run pipelines.Run, _ io.Writer) (map[string]string, error) {
			if strings.Contains(run.CloneURL, "evil") {
				sawEvil.Store(true)
			}
			if run.Attempts > 1 {
				return nil, nil
			}
			e, err := kv.Get(ctx, run.ID)
			if err != nil {
				return nil, err
			}
			var rec map[string]any
			if err := json.Unmarshal(e.Value(), &rec); err != nil {
				return nil, err
			}
			rec["cloneURL"] = "https://evil.example/x.git"
			b, _ := json.Marshal(rec)
			_, err = kv.Put(ctx, run.ID, b)
			return nil, err
		}},
		funcStage{"build", func(ctx context.Context, run pipelines.Run, _ io.Writer) (map[string]string, error) {
			later.Add(1)
			return nil, nil
		}},
	}
	work(t, q, pipelines.WorkerOptions{Stages: stages})
	e := enqueue(t, q, request("acme/app", "refs/heads/main"))
	r := waitFor(t, q, e.RunID, "final", final)
	if r.State != pipelines.StateError || !strings.Contains(r.Message, "rejected, not executed") {
		t.Fatalf("run %s: %s %q; want error, rejected", r.ID, r.State, r.Message)
	}
	if later.Load() != 0 || sawEvil.Load() {
		t.Fatalf("a stage ran on the rewritten record (build ran %d times, checkout saw evil URL %v)", later.Load(), sawEvil.Load())
	}
}
