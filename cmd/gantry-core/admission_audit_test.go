package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
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

var admissionListeningRE = regexp.MustCompile(`admission webhook listening" addr=(\S+)`)

// TestAdmissionWritesAuditRecords runs `gantry admission` as a process and
// checks that an exemption used and a break-glass reach the audit file,
// and also the GANTRY_AUDIT stream when queue.natsURL names an external
// server (a real nats-server).
func TestAdmissionWritesAuditRecords(t *testing.T) {
	env := testenv.Require(t)
	for _, mode := range []string{"file", "file+stream"} {
		t.Run(mode, func(t *testing.T) {
			dir := t.TempDir()
			natsURL := ""
			if mode == "file+stream" {
				natsURL = natstest.Start(t, env.NATSServer, "").URL
			}
			cfg := filepath.Join(dir, "gantry.yaml")
			if err := os.WriteFile(cfg, []byte(fmt.Sprintf(`
queue: {dataDir: %q, natsURL: %q}
admission:
  listen: 127.0.0.1:0
  exemptions:
    - {namespace: legacy, reason: "legacy app, ticket OPS-12"}
  breakGlass: {groups: [sre]}
`, filepath.Join(dir, "data"), natsURL)), 0o600); err != nil {
				t.Fatal(err)
			}
			tlsDir := filepath.Join(dir, "tls")
			p := startGantryUntil(t, admissionListeningRE, filepath.Join(dir, "admission.log"),
				"admission", "--config", cfg, "--tls-self-signed", tlsDir)
			client := tlsClient(t, filepath.Join(tlsDir, "ca.crt"))

			until := time.Now().Add(time.Hour).UTC().Format(time.RFC3339)
			for _, rv := range []struct {
				ns, user, group, annotations string
				allowed                      bool
			}{
				{ns: "legacy", user: "alice", group: "dev", annotations: `{}`, allowed: true},
				{ns: "fn", user: "bob", group: "sre", annotations: `{"gantry.dev/break-glass-until":"` + until + `"}`, allowed: true},
				{ns: "fn", user: "mallory", group: "dev", annotations: `{"gantry.dev/break-glass-until":"` + until + `"}`},
			} {
				if got := review(t, client, p.addr, rv.ns, rv.user, rv.group, rv.annotations); got != rv.allowed {
					t.Fatalf("%s in %s: allowed=%v, want %v\n%s", rv.user, rv.ns, got, rv.allowed, readFile(t, p.logFile))
				}
			}
			want := []struct{ action, actor, outcome, detail string }{
				{audit.ActionAdmissionExemption, "alice", audit.OutcomeOK, `"exemption":"namespace legacy"`},
				{audit.ActionAdmissionBreakGlass, "bob", audit.OutcomeOK, `"expires":"` + until + `"`},
				{audit.ActionAdmissionBreakGlass, "mallory", audit.OutcomeDenied, `"groups":"dev"`},
			}
			check := func(where string, lines []string) {
				t.Helper()
				if len(lines) != len(want) {
					t.Fatalf("%s: %d records, want %d:\n%s", where, len(lines), len(want), strings.Join(lines, "\n"))
				}
				for i, w := range want {
					var e audit.Event
					if err := json.Unmarshal([]byte(lines[i]), &e); err != nil {
						t.Fatalf("%s: %v: %s", where, err, lines[i])
					}
					if e.Action != w.action || e.Actor != w.actor || e.Outcome != w.outcome || e.Method != "kubernetes" ||
						!strings.Contains(lines[i], w.detail) || !strings.Contains(lines[i], `"uid":"uid-`+w.actor+`"`) {
						t.Errorf("%s record %d: %s\nwant %+v", where, i, lines[i], w)
					}
				}
			}
			file := strings.TrimSpace(readFile(t, filepath.Join(dir, "data", "audit.jsonl")))
			check("audit.jsonl", strings.Split(file, "\n"))
			if natsURL != "" {
				check("stream "+auditstream.Name, streamRecords(t, natsURL, len(want)))
			}
		})
	}
}

func tlsClient(t *testing.T, caFile string) *http.Client {
	t.Helper()
	pem, err := os.ReadFile(caFile)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		t.Fatalf("no certificate in %s", caFile)
	}
	return &http.Client{Timeout: 15 * time.Second,
		Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, ServerName: "localhost"}}}
}

// review sends a Pod AdmissionReview (an unverifiable image: no signer
// policy) and returns whether it was allowed.
func review(t *testing.T, c *http.Client, addr, ns, user, group, annotations string) bool {
	t.Helper()
	pod := fmt.Sprintf(`{"apiVersion":"v1","kind":"Pod","metadata":{"name":"p","namespace":%q,"annotations":%s},
"spec":{"securityContext":{"runAsNonRoot":true,"runAsUser":1000,"seccompProfile":{"type":"RuntimeDefault"}},
"containers":[{"name":"app","image":"127.0.0.1:1/fn/app@sha256:%064x",
"securityContext":{"allowPrivilegeEscalation":false,"capabilities":{"drop":["ALL"]}}}]}}`, ns, annotations, 1)
	body := fmt.Sprintf(`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"uid-%s",
"kind":{"group":"","version":"v1","kind":"Pod"},"resource":{"group":"","version":"v1","resource":"pods"},
"namespace":%q,"operation":"CREATE","userInfo":{"username":%q,"groups":[%q]},"object":%s}}`, user, ns, user, group, pod)
	_, port, _ := strings.Cut(addr, "]:")
	if port == "" {
		_, port, _ = strings.Cut(addr, ":")
	}
	resp, err := c.Post("https://localhost:"+port+"/validate", "application/json", bytes.NewBufferString(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out struct {
		Response struct {
			Allowed bool `json:"allowed"`
		} `json:"response"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil || resp.StatusCode != 200 {
		t.Fatalf("review: %d %v", resp.StatusCode, err)
	}
	return out.Response.Allowed
}

// streamRecords reads n records from the GANTRY_AUDIT stream.
func streamRecords(t *testing.T, url string, n int) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	nc, err := nats.Connect(url, nats.Timeout(5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	s, err := js.Stream(ctx, auditstream.Name)
	if err != nil {
		t.Fatalf("stream %s: %v", auditstream.Name, err)
	}
	var out []string
	for seq := uint64(1); ; seq++ {
		m, err := s.GetMsg(ctx, seq)
		if err != nil {
			break
		}
		out = append(out, strings.TrimSpace(string(m.Data)))
	}
	if len(out) != n {
		t.Logf("stream holds %d records, want %d", len(out), n)
	}
	return out
}
