package main

import (
	"context"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/gantry-dev/gantry/audit"
	auditstream "github.com/gantry-dev/gantry/audit/stream"
	"github.com/gantry-dev/gantry/internal/natstest"
	"github.com/gantry-dev/gantry/internal/testenv"
)

// TestServeAuditOnExternalQueue cancels a run through the API of `gantry
// serve` and checks where the record lands: the audit file always, and the
// append-only GANTRY_AUDIT stream of the queue's server when the queue is
// external (a real nats-server), where a delete is refused.
func TestServeAuditOnExternalQueue(t *testing.T) {
	t.Parallel()
	env := testenv.Require(t)
	for _, mode := range []string{"embedded", "external"} {
		t.Run(mode, func(t *testing.T) {
			natsURL := ""
			if mode == "external" {
				natsURL = natstest.Start(t, env.NATSServer, "").URL
			}
			rig := newServeRig(t, natsURL)
			// One stage that waits long enough to be cancelled while running.
			p := startGantry(t, filepath.Join(rig.dir, "serve.log"), "serve", "--config", rig.config,
				"--test-stages", "record:"+rig.calls+":1:30s")
			id := push(t, p.addr, "audit-"+mode, "main", 1).RunID
			req, _ := http.NewRequest(http.MethodPost, "http://"+p.addr+"/api/v1/runs/"+id+"/cancel", nil)
			req.Header.Set("Authorization", "Bearer "+rig.token)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("cancel: %d", resp.StatusCode)
			}

			isCancel := func(line string) bool {
				return strings.Contains(line, `"action":"run.cancel"`) && strings.Contains(line, `"target":"`+id+`"`) &&
					strings.Contains(line, `"outcome":"ok"`) && !strings.Contains(line, rig.token)
			}
			file := strings.TrimSpace(readFile(t, filepath.Join(rig.dir, "data", "audit.jsonl")))
			if !isCancel(file) || strings.Count(file, "\n") != 0 {
				t.Fatalf("audit.jsonl:\n%s", file)
			}
			if natsURL == "" {
				if strings.Contains(readFile(t, p.logFile), auditstream.Name) {
					t.Fatal("embedded queue: audit records must not go to a stream")
				}
				return
			}
			ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
			defer cancel()
			nc, err := nats.Connect(natsURL, nats.Timeout(5*time.Second))
			if err != nil {
				t.Fatal(err)
			}
			defer nc.Close()
			js, _ := jetstream.New(nc)
			s, err := js.Stream(ctx, auditstream.Name)
			if err != nil {
				t.Fatalf("no %s stream on the external server: %v\n%s", auditstream.Name, err, readFile(t, p.logFile))
			}
			m, err := s.GetMsg(ctx, 1)
			if err != nil {
				t.Fatal(err)
			}
			if m.Subject != auditstream.SubjectPrefix+audit.ActionRunCancel || !isCancel(string(m.Data)) {
				t.Fatalf("stream record on %s: %s", m.Subject, m.Data)
			}
			if err := s.DeleteMsg(ctx, 1); err == nil {
				t.Fatal("the audit stream let a record be deleted")
			}
			if err := s.Purge(ctx); err == nil {
				t.Fatal("the audit stream let itself be purged")
			}
		})
	}
}
