package admission

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/gantry-dev/gantry/admission/objects"
	"github.com/gantry-dev/gantry/audit"
	"github.com/gantry-dev/gantry/audit/audittest"
	"github.com/gantry-dev/gantry/config"
)

// TestAuditRecords checks what reaches the (real, file) audit log: one
// record per exemption used and per break-glass annotation on a refused
// object, nothing for requests that bent no rule.
func TestAuditRecords(t *testing.T) {
	f := newFixture(t)
	now := time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)
	good := f.images["nonroot"]
	f.sign("nonroot")
	unsigned := pushImage(t, f.reg, f.host+"/test/unsigned-audit:v1", "1000")
	bgAnn := func(until time.Time) string {
		return `{"gantry.dev/break-glass-until":"` + until.Format(time.RFC3339) + `"}`
	}
	pod := func(ann string, containers ...string) Request {
		return Request{Operation: "CREATE", Namespace: "fn", Username: "alice", Groups: []string{"dev", "system:authenticated"},
			UID: "uid-1", Workload: decode(t, "Pod", podJSON("p", ann, "", containers...))}
	}
	as := func(r Request, user string, groups ...string) Request {
		r.Username, r.Groups = user, groups
		return r
	}
	bgCfg := func(c *config.Admission) { c.BreakGlass.Groups = []string{"sre"} }

	type want struct {
		action, actor, outcome string
		reason                 string            // substring
		details                map[string]string // exact values
	}
	cases := []struct {
		name    string
		cfg     func(*config.Admission)
		req     Request
		allowed bool
		want    []want
	}{
		{name: "clean pod: no record", req: pod("", ctr("app", good, "")), allowed: true},
		{name: "refused pod without exemption or annotation: no record", req: pod("", ctr("app", unsigned, ""))},
		{name: "namespace exemption", cfg: func(c *config.Admission) {
			c.Exemptions = []config.AdmissionExemption{{Namespace: "fn", Reason: "legacy app, ticket OPS-12"}}
		}, req: pod("", ctr("app", unsigned, "")), allowed: true, want: []want{{
			action: audit.ActionAdmissionExemption, actor: "alice", outcome: audit.OutcomeOK, reason: "legacy app, ticket OPS-12",
			details: map[string]string{"namespace": "fn", "kind": "Pod", "name": "p", "operation": "CREATE", "uid": "uid-1",
				"rules": "signature,podSecurity,nonRoot", "exemption": "namespace fn", "groups": "dev,system:authenticated", "mode": "enforce"},
		}}},
		{name: "exemption used although the pod was clean", cfg: func(c *config.Admission) {
			c.Exemptions = []config.AdmissionExemption{{Group: "dev", Rules: []string{"signature"}, Reason: "dev loop"}}
		}, req: pod("", ctr("app", good, "")), allowed: true, want: []want{{
			action: audit.ActionAdmissionExemption, actor: "alice", outcome: audit.OutcomeOK, reason: "dev loop",
			details: map[string]string{"rules": "signature", "exemption": "group dev"},
		}}},
		{name: "service account exemption on a dry run", cfg: func(c *config.Admission) {
			c.Exemptions = []config.AdmissionExemption{{ServiceAccount: "ci/deployer", Reason: "gitops"}}
		}, req: func() Request {
			r := as(pod("", ctr("app", unsigned, "")), "system:serviceaccount:ci:deployer")
			r.DryRun = true
			return r
		}(), allowed: true, want: []want{{
			action: audit.ActionAdmissionExemption, actor: "system:serviceaccount:ci:deployer", outcome: audit.OutcomeOK, reason: "gitops",
			details: map[string]string{"exemption": "serviceAccount ci/deployer", "dryRun": "true"},
		}}},
		{name: "image exemption: one record per image it matched", cfg: func(c *config.Admission) {
			c.Exemptions = []config.AdmissionExemption{{Image: f.host + "/test/*", Rules: []string{"signature"}, Reason: "mirror"}}
		}, req: pod("", ctr("a", unsigned, ""), ctr("b", good, "")), allowed: true, want: []want{
			{action: audit.ActionAdmissionExemption, actor: "alice", outcome: audit.OutcomeOK, reason: "mirror",
				details: map[string]string{"image": unsigned, "exemption": "image " + f.host + "/test/*", "rules": "signature"}},
			{action: audit.ActionAdmissionExemption, actor: "alice", outcome: audit.OutcomeOK, reason: "mirror",
				details: map[string]string{"image": good}},
		}},
		{name: "break-glass used", cfg: bgCfg, req: as(pod(bgAnn(now.Add(2*time.Hour)), ctr("app", unsigned, "")), "bob", "sre"),
			allowed: true, want: []want{{
				action: audit.ActionAdmissionBreakGlass, actor: "bob", outcome: audit.OutcomeOK, reason: "admitted despite 1 violation",
				details: map[string]string{"expires": "2026-11-01T14:00:00Z", "rules": "signature", "groups": "sre", "namespace": "fn"},
			}}},
		{name: "break-glass by a non-member is recorded as denied", cfg: bgCfg, req: pod(bgAnn(now.Add(time.Hour)), ctr("app", unsigned, "")),
			want: []want{{
				action: audit.ActionAdmissionBreakGlass, actor: "alice", outcome: audit.OutcomeDenied, reason: "not in a break-glass group",
				details: map[string]string{"expires": "2026-11-01T13:00:00Z", "rules": "breakGlass"},
			}}},
		{name: "expired break-glass is recorded as denied", cfg: bgCfg, req: as(pod(bgAnn(now.Add(-time.Minute)), ctr("app", unsigned, "")), "bob", "sre"),
			want: []want{{action: audit.ActionAdmissionBreakGlass, actor: "bob", outcome: audit.OutcomeDenied, reason: "expired"}}},
		{name: "break-glass armed on an object that needs none is recorded", cfg: bgCfg,
			req: as(pod(bgAnn(now.Add(time.Hour)), ctr("app", good, "")), "bob", "sre"), allowed: true, want: []want{{
				action: audit.ActionAdmissionBreakGlass, actor: "bob", outcome: audit.OutcomeOK, reason: "no violation to admit now",
				details: map[string]string{"expires": "2026-11-01T13:00:00Z", "rules": ""},
			}}},
		{name: "break-glass by a non-member is refused in warn mode too", cfg: func(c *config.Admission) {
			bgCfg(c)
			c.Mode = "warn"
		}, req: pod(bgAnn(now.Add(time.Hour)), ctr("app", unsigned, "")), want: []want{{
			action: audit.ActionAdmissionBreakGlass, actor: "alice", outcome: audit.OutcomeDenied, details: map[string]string{"mode": "warn"},
		}}},
		{name: "exemption and break-glass in one review", cfg: func(c *config.Admission) {
			bgCfg(c)
			c.Exemptions = []config.AdmissionExemption{{Namespace: "fn", Rules: []string{"podSecurity"}, Reason: "legacy"}}
		}, req: as(pod(bgAnn(now.Add(time.Hour)), ctr("app", unsigned, `{"privileged":true}`)), "bob", "sre"), allowed: true, want: []want{
			{action: audit.ActionAdmissionExemption, actor: "bob", outcome: audit.OutcomeOK, reason: "legacy", details: map[string]string{"rules": "podSecurity"}},
			{action: audit.ActionAdmissionBreakGlass, actor: "bob", outcome: audit.OutcomeOK, details: map[string]string{"rules": "signature"}},
		}},
		{name: "unchanged update uses no exemption", cfg: func(c *config.Admission) {
			c.Exemptions = []config.AdmissionExemption{{Namespace: "fn", Reason: "legacy"}}
		}, req: func() Request {
			r := pod("", ctr("app", unsigned, ""))
			r.Operation, r.Old = "UPDATE", decode(t, "Pod", podJSON("p", `{"x":"y"}`, "", ctr("app", unsigned, "")))
			return r
		}(), allowed: true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "audit.jsonl")
			sink, err := audit.OpenFile(path)
			if err != nil {
				t.Fatal(err)
			}
			defer sink.Close()
			e := f.evaluator(t, c.cfg, now)
			e.o.Audit = sink
			d := e.Evaluate(context.Background(), c.req)
			if d.Allowed != c.allowed {
				t.Fatalf("allowed=%v, want %v\n%s", d.Allowed, c.allowed, d.Message())
			}
			got := audittest.ReadFile(t, path)
			if len(got) != len(c.want) {
				t.Fatalf("%d records, want %d: %+v", len(got), len(c.want), got)
			}
			for i, w := range c.want {
				g := got[i]
				if g.Action != w.action || g.Actor != w.actor || g.Outcome != w.outcome || g.Method != "kubernetes" ||
					g.Target != "Pod fn/p" || !strings.Contains(g.Reason, w.reason) || g.Time.IsZero() {
					t.Errorf("record %d: %+v, want %+v", i, g, w)
				}
				for k, v := range w.details {
					if g.Details[k] != v {
						t.Errorf("record %d: details[%s] = %q, want %q (all: %v)", i, k, g.Details[k], v, g.Details)
					}
				}
				if _, ok := g.Details["dryRun"]; ok != c.req.DryRun {
					t.Errorf("record %d: dryRun detail present=%v, want %v", i, ok, c.req.DryRun)
				}
			}
		})
	}
}

// stalledSink never answers before its context ends.
type stalledSink struct{}

func (stalledSink) Record(ctx context.Context, _ audit.Event) error {
	<-ctx.Done()
	return ctx.Err()
}

// A sink that fails or stalls costs the record, never the decision or the
// review: the failure is counted and the answer arrives.
func TestAuditFailureKeepsDecision(t *testing.T) {
	f := newFixture(t)
	now := time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)
	unsigned := pushImage(t, f.reg, f.host+"/test/unsigned-audit-fail:v1", "1000")
	closed, err := audit.OpenFile(filepath.Join(t.TempDir(), "audit.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	_ = closed.Close() // every write fails
	for name, sink := range map[string]audit.Sink{"closed file": closed, "stalled sink": stalledSink{}} {
		t.Run(name, func(t *testing.T) {
			e := f.evaluator(t, func(c *config.Admission) {
				c.Exemptions = []config.AdmissionExemption{{Namespace: "fn", Reason: "legacy"}}
			}, now)
			e.o.Audit, e.o.AuditTimeout = sink, 100*time.Millisecond
			d := e.Evaluate(context.Background(), Request{Operation: "CREATE", Namespace: "fn", Username: "alice",
				Workload: decode(t, "Pod", podJSON("p", "", "", ctr("app", unsigned, "")))})
			if !d.Allowed || len(d.Exempt) != 1 {
				t.Fatalf("decision changed by the audit failure: %+v", d)
			}
			if n := e.Metrics().AuditFailures(); n != 1 {
				t.Fatalf("audit failures counted %v, want 1", n)
			}
		})
	}
}

// BenchmarkExemptionAudit measures what the audit record adds to a review
// that uses an exemption: no sink vs the file sink (one fsync per record).
//
//	go test ./admission -run XXX -bench ExemptionAudit
func BenchmarkExemptionAudit(b *testing.B) {
	cfg := config.DefaultAdmission()
	cfg.VerifySignatures = false
	cfg.Exemptions = []config.AdmissionExemption{{Namespace: "fn", Reason: "bench"}}
	w, err := objects.Decode(schema.GroupVersionKind{Version: "v1", Kind: "Pod"},
		[]byte(podJSON("p", "", "", ctr("app", "r/x@sha256:"+strings.Repeat("a", 64), ""))))
	if err != nil {
		b.Fatal(err)
	}
	for _, withFile := range []bool{false, true} {
		name := "no-sink"
		o := Options{}
		if withFile {
			name = "file"
			f, err := audit.OpenFile(filepath.Join(b.TempDir(), "audit.jsonl"))
			if err != nil {
				b.Fatal(err)
			}
			defer f.Close()
			o.Audit = f
		}
		e, err := New(cfg, o)
		if err != nil {
			b.Fatal(err)
		}
		b.Run(name, func(b *testing.B) {
			for b.Loop() {
				if d := e.Evaluate(context.Background(), Request{Operation: "CREATE", Namespace: "fn", Username: "alice", Workload: w}); !d.Allowed {
					b.Fatal(d.Message())
				}
			}
		})
	}
}
