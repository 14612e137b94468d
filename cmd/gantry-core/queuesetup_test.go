package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/gantry-dev/gantry/internal/natstest"
	"github.com/gantry-dev/gantry/internal/testenv"
	"github.com/gantry-dev/gantry/pipelines"
)

// TestQueueSetupThenProvisionedOpen is the seam of the chart's setup Job
// and the roles: `gantry queue setup` creates every stream and bucket with
// queue.replicas and the audit stream; a queue opened with
// queue.provisioned finds them; without setup it refuses with the fix.
func TestQueueSetupThenProvisionedOpen(t *testing.T) {
	env := testenv.Require(t)
	ns := natstest.Start(t, env.NATSServer, "")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	if _, err := pipelines.Open(ctx, pipelines.Options{Connection: pipelines.Connection{URL: ns.URL}, Provisioned: true}); err == nil ||
		!strings.Contains(err.Error(), "gantry queue setup") {
		t.Fatalf("provisioned open before setup: %v, want an error naming `gantry queue setup`", err)
	}
	cfg := filepath.Join(t.TempDir(), "gantry.yaml")
	if err := os.WriteFile(cfg, []byte("queue:\n  natsURL: "+ns.URL+"\n  provisioned: true\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if code, _, stderr := gantry(t, nil, "queue", "setup", "--config", cfg); code != 0 {
		t.Fatalf("queue setup: exit %d\n%s", code, stderr)
	}
	nc, err := nats.Connect(ns.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{"GANTRY_RUNS", "GANTRY_DEADLETTER", "KV_gantry_runs", "KV_gantry_deliveries", "KV_gantry_heads", "OBJ_gantry_logs", "GANTRY_AUDIT"} {
		if _, err := js.Stream(ctx, s); err != nil {
			t.Errorf("stream %s after setup: %v", s, err)
		}
	}
	q, err := pipelines.Open(ctx, pipelines.Options{Connection: pipelines.Connection{URL: ns.URL}, Provisioned: true})
	if err != nil {
		t.Fatalf("provisioned open after setup: %v", err)
	}
	q.Close()
	if code, _, stderr := gantry(t, nil, "queue", "setup"); code == 0 || !strings.Contains(stderr, "queue.natsURL") {
		t.Errorf("setup without natsURL: exit %d, %s", code, stderr)
	}
}
