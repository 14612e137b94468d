package main

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/gantry-dev/gantry/internal/natstest"
	"github.com/gantry-dev/gantry/internal/testenv"
	"github.com/gantry-dev/gantry/pipelines"
)

// sealedWorkerConfig writes a receiver seal key and a worker config that
// trusts it, allows acme/app (every branch) and audits to dir/audit.jsonl.
func sealedWorkerConfig(t *testing.T, dir string) (*pipelines.Sealer, string) {
	t.Helper()
	pub, priv, err := ed25519.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	pubFile := filepath.Join(dir, "seal.pub")
	if err := os.WriteFile(pubFile, pipelines.MarshalPublicKey(pub), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(dir, "worker.yaml")
	if err := os.WriteFile(cfg, fmt.Appendf(nil, `queue: {sealPublicKeyFiles: [%q]}
webhooks: {repos: [{name: acme/app, branches: ["*"]}]}
audit: {file: %q}
`, pubFile, filepath.Join(dir, "audit.jsonl")), 0o600); err != nil {
		t.Fatal(err)
	}
	return pipelines.NewSealer(priv), cfg
}

// TestWorkerExecutesOnlySealedRuns is the attack of issue 14 through the
// real processes: whoever can write to NATS (a function pod with the
// chart's defaults) stores run records and publishes their messages. The
// worker must execute only the runs the receiver sealed, for an allowed
// repository, cloned from that repository's own URL on the GitHub host;
// every other record is dead-lettered with its reason, audited and
// counted, and no stage sees it.
func TestWorkerExecutesOnlySealedRuns(t *testing.T) {
	t.Parallel()
	env := testenv.Require(t)
	ns := natstest.Start(t, env.NATSServer, "")
	dir := t.TempDir()
	calls := filepath.Join(dir, "calls")
	sealer, cfg := sealedWorkerConfig(t, dir)
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	open := func(s *pipelines.Sealer) *pipelines.Queue {
		q, err := pipelines.Open(ctx, pipelines.Options{Connection: pipelines.Connection{URL: ns.URL}, Sealer: s, CancelSuperseded: false})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(q.Close)
		return q
	}
	receiver := open(sealer)                   // the honest receiver
	attacker := open(nil)                      // NATS access, no key
	_, otherKey, _ := ed25519.GenerateKey(nil) // a key the workers do not trust
	impostor := open(pipelines.NewSealer(otherKey))
	n := 0
	enqueue := func(q *pipelines.Queue, repo, cloneURL string) string {
		t.Helper()
		n++
		e, err := q.Enqueue(ctx, pipelines.Request{DeliveryID: fmt.Sprintf("seal-%d", n), Repo: repo, CloneURL: cloneURL,
			Ref: fmt.Sprintf("refs/heads/b%d", n), Commit: fmt.Sprintf("%040x", n)})
		if err != nil {
			t.Fatal(err)
		}
		return e.RunID
	}
	// tamper rewrites a field of a sealed record in the KV bucket, as an
	// attacker with NATS access can.
	nc, err := nats.Connect(ns.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	kv, err := js.KeyValue(ctx, "gantry_runs")
	if err != nil {
		t.Fatal(err)
	}
	tamper := func(id, field, value string) {
		t.Helper()
		e, err := kv.Get(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		var rec map[string]any
		if err := json.Unmarshal(e.Value(), &rec); err != nil {
			t.Fatal(err)
		}
		rec[field] = value
		b, _ := json.Marshal(rec)
		if _, err := kv.Put(ctx, id, b); err != nil {
			t.Fatal(err)
		}
	}
	good := "https://github.com/acme/app.git"
	honest := []string{
		enqueue(receiver, "acme/app", good),
		enqueue(receiver, "ACME/App", "https://GitHub.com/acme/APP"), // case-insensitive, as GitHub
	}
	forged := map[string]string{ // run id -> rejection reason (metric label)
		enqueue(attacker, "acme/app", "https://evil.example/x.git"):          "unsealed",
		enqueue(impostor, "acme/app", good):                                  "unknown_key",
		enqueue(receiver, "acme/other", "https://github.com/acme/other.git"): "not_allowed",
		enqueue(receiver, "acme/app", "https://evil.example/acme/app.git"):   "clone_url",
		enqueue(receiver, "acme/app", "https://github.com/evil/app.git"):     "clone_url",
	}
	id := enqueue(receiver, "acme/app", good)
	tamper(id, "cloneURL", "https://evil.example/x.git")
	forged[id] = "bad_seal"
	id = enqueue(receiver, "acme/app", good)
	tamper(id, "commit", fmt.Sprintf("%040x", 999))
	forged[id] = "bad_seal"

	p := startGantry(t, filepath.Join(dir, "worker.log"), "worker", "--config", cfg, "--nats-url", ns.URL,
		"--workers", "2", "--listen", "127.0.0.1:0", "--insecure-http", "--test-stages", "record:"+calls+":1:0s")
	for _, id := range honest {
		waitRunFinal(ctx, t, receiver, id, p)
	}
	for id, reason := range forged {
		var r *pipelines.Run
		for {
			r, err = receiver.Get(ctx, id)
			if err == nil && r.State.Final() {
				break
			}
			select {
			case <-ctx.Done():
				t.Fatalf("forged run %s (%s) not settled\n%s", id, reason, readFile(t, p.logFile))
			case <-time.After(20 * time.Millisecond):
			}
		}
		if r.State != pipelines.StateError || !strings.Contains(r.Message, "rejected, not executed") {
			t.Errorf("forged run %s (%s): state %s, message %q; want error, rejected", id, reason, r.State, r.Message)
		}
	}
	// No stage saw a forged run.
	rec := readFile(t, calls)
	for id, reason := range forged {
		if strings.Contains(rec, id) {
			t.Errorf("forged run %s (%s) reached a stage:\n%s", id, reason, rec)
		}
	}
	for _, id := range honest {
		if !strings.Contains(rec, id) {
			t.Errorf("honest run %s was not executed:\n%s", id, rec)
		}
	}
	// Dead-lettered, audited, counted.
	s, err := js.Stream(ctx, "GANTRY_DEADLETTER")
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if int(info.State.Msgs) != len(forged) {
		t.Errorf("dead letters: %d, want %d", info.State.Msgs, len(forged))
	}
	auditLog := readFile(t, filepath.Join(dir, "audit.jsonl"))
	want := map[string]int{}
	for id, reason := range forged {
		want[reason]++
		if !regexp.MustCompile(`"action":"run.reject".*"target":"` + id + `".*"outcome":"denied"`).MatchString(auditLog) {
			t.Errorf("no audit record for forged run %s:\n%s", id, auditLog)
		}
	}
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Get("http://" + p.addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	for reason, count := range want {
		line := fmt.Sprintf(`gantry_runs_rejected_total{reason=%q} %d`, reason, count)
		if !strings.Contains(string(body), line) {
			t.Errorf("metrics lack %s", line)
		}
	}
}

// TestWorkerRefusesToStartWithoutSealKey: fail closed, naming the key.
func TestWorkerRefusesToStartWithoutSealKey(t *testing.T) {
	env := testenv.Require(t)
	ns := natstest.Start(t, env.NATSServer, "")
	code, _, stderr := gantryWithTimeout(t, "worker", "--nats-url", ns.URL)
	if code != exitFailure || !strings.Contains(stderr, "queue.sealPublicKeyFiles") {
		t.Fatalf("exit %d, stderr %q; want a refusal naming queue.sealPublicKeyFiles", code, stderr)
	}
}
