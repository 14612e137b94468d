package admission

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	jsonpatch "gopkg.in/evanphx/json-patch.v4"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/gantry-dev/gantry/admission/objects"
	"github.com/gantry-dev/gantry/admission/verification"
	"github.com/gantry-dev/gantry/config"
)

func TestMutate(t *testing.T) {
	f := newFixture(t)
	now := time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)
	unsigned := pushImage(t, f.reg, f.host+"/test/unsigned:v1", "1000")
	unsignedTag := f.host + "/test/unsigned:v1"
	f.verifier.results[f.digest("zero")] = verification.Result{Reason: verification.ReasonUntrusted, Message: "signed by an unknown key"}
	f.verifier.errs[f.digest("rootname")] = errors.New("dial tcp: connection refused")
	good, goodTag := f.images["nonroot"], f.tags["nonroot"]
	_, goodDigest, _ := strings.Cut(good, "@")
	_, unsignedDigest, _ := strings.Cut(unsigned, "@")

	pod := func(containers ...string) *objects.Workload {
		return decode(t, "Pod", podJSON("p", "", "", containers...))
	}
	req := func(w *objects.Workload) MutateRequest {
		return MutateRequest{Request: Request{Operation: "CREATE", Namespace: "fn", Username: "alice", Groups: []string{"dev"}, Workload: w}}
	}
	deployment := decode(t, "Deployment", `{"metadata":{"name":"d","namespace":"fn"},"spec":{"template":{"spec":{`+
		`"initContainers":[{"name":"init","image":"`+f.tags["other"]+`"}],`+
		`"containers":[{"name":"a","image":"`+goodTag+`"},{"name":"b","image":"`+good+`"},{"name":"c","image":"`+goodTag+`"}]}}}}`)
	cronJob := decode(t, "CronJob", `{"metadata":{"name":"c","namespace":"fn"},"spec":{"jobTemplate":{"spec":{"template":{"spec":{"containers":[{"name":"a","image":"`+goodTag+`"}]}}}}}}`)
	ephemeral := decode(t, "Pod", `{"metadata":{"name":"p","namespace":"fn"},"spec":{"containers":[{"name":"a","image":"`+goodTag+`"}],"ephemeralContainers":[{"name":"dbg","image":"`+f.tags["other"]+`"}]}}`)
	bgPod := decode(t, "Pod", `{"metadata":{"name":"p","namespace":"fn","annotations":{"gantry.dev/break-glass-until":"`+now.Add(time.Hour).Format(time.RFC3339)+`"}},"spec":{"containers":[{"name":"a","image":"`+unsignedTag+`"}]}}`)

	type pin struct{ pointer, image string }
	cases := []struct {
		name     string
		cfg      func(*config.Admission)
		req      MutateRequest
		allowed  bool
		pins     []pin
		verified bool
		contains []string // of the deny message
	}{
		{name: "tag of a signed image pinned", req: req(pod(ctr("app", goodTag, ""))), allowed: true, verified: true,
			pins: []pin{{"/spec/containers/0/image", goodTag + "@" + goodDigest}}},
		{name: "pinned image left alone", req: req(pod(ctr("app", good, ""))), allowed: true},
		{name: "tag of an unsigned image refused naming tag and digest", req: req(pod(ctr("app", unsignedTag, ""))),
			contains: []string{`signature: image "` + unsignedTag + `"`, "the tag resolves to " + f.host + "/test/unsigned@" + unsignedDigest, "which is not signed by a trusted identity: no signature", "fix: sign"}},
		{name: "tag of an untrusted signature refused", req: req(pod(ctr("app", f.host+"/test/zero:v1", ""))),
			contains: []string{"/test/zero:v1", "untrusted key or identity: signed by an unknown key", "add the signer to the verify policy"}},
		{name: "signature undecided refuses (fail closed)", req: req(pod(ctr("app", f.host+"/test/rootname:v1", ""))),
			contains: []string{"/test/rootname:v1", "the tag resolves to", "could not verify: registry unreachable"}},
		{name: "unknown tag refuses (fail closed)", req: req(pod(ctr("app", f.host+"/test/nonroot:nope", ""))),
			contains: []string{"/test/nonroot:nope", "could not resolve the tag to a digest: registry unreachable or image missing", "pin the image by digest"}},
		{name: "unreachable registry refuses (fail closed)", req: req(pod(ctr("app", "127.0.0.1:1/fn/app:v1", ""))),
			contains: []string{"127.0.0.1:1/fn/app:v1", "could not resolve the tag to a digest"}},
		{name: "one bad tag refuses the whole object, no partial patch", req: req(pod(ctr("a", goodTag, ""), ctr("b", unsignedTag, ""))),
			contains: []string{unsignedTag}},
		{name: "every container of a Deployment template, same tag twice", req: req(deployment), allowed: true, verified: true,
			pins: []pin{
				{"/spec/template/spec/initContainers/0/image", f.tags["other"] + "@" + f.digest("other")},
				{"/spec/template/spec/containers/0/image", goodTag + "@" + goodDigest},
				{"/spec/template/spec/containers/2/image", goodTag + "@" + goodDigest},
			}},
		{name: "CronJob template", req: req(cronJob), allowed: true, verified: true,
			pins: []pin{{"/spec/jobTemplate/spec/template/spec/containers/0/image", goodTag + "@" + goodDigest}}},
		{name: "ephemeralcontainers subresource: only ephemeral containers", req: func() MutateRequest {
			r := req(ephemeral)
			r.Operation, r.EphemeralOnly = "UPDATE", true
			return r
		}(), allowed: true, verified: true,
			pins: []pin{{"/spec/ephemeralContainers/0/image", f.tags["other"] + "@" + f.digest("other")}}},
		{name: "update leaving the pod spec alone is not pinned", req: func() MutateRequest {
			r := req(pod(ctr("app", unsignedTag, "")))
			r.Operation, r.Old = "UPDATE", pod(ctr("app", unsignedTag, ""))
			return r
		}(), allowed: true},
		{name: "update changing the pod spec is pinned", req: func() MutateRequest {
			r := req(pod(ctr("app", goodTag, "")))
			r.Operation, r.Old = "UPDATE", pod(ctr("app", good, ""))
			return r
		}(), allowed: true, verified: true, pins: []pin{{"/spec/containers/0/image", goodTag + "@" + goodDigest}}},
		{name: "warn namespace: pinned, verdict left to validation", cfg: func(c *config.Admission) {
			c.Namespaces = []config.AdmissionNamespace{{Name: "fn", Mode: ModeWarn}}
		}, req: req(pod(ctr("app", unsignedTag, ""))), allowed: true, pins: []pin{{"/spec/containers/0/image", unsignedTag + "@" + unsignedDigest}}},
		{name: "warn namespace: unknown tag left as is", cfg: func(c *config.Admission) {
			c.Namespaces = []config.AdmissionNamespace{{Name: "fn", Mode: ModeWarn}}
		}, req: req(pod(ctr("app", f.host+"/test/nonroot:nope", ""))), allowed: true},
		{name: "break-glass that would admit: pinned, verdict left to validation", cfg: func(c *config.Admission) { c.BreakGlass.Groups = []string{"sre"} },
			req: func() MutateRequest {
				r := req(bgPod)
				r.Groups = []string{"sre"}
				return r
			}(), allowed: true, pins: []pin{{"/spec/containers/0/image", unsignedTag + "@" + unsignedDigest}}},
		{name: "break-glass set by a non-member admits nothing: refused", cfg: func(c *config.Admission) { c.BreakGlass.Groups = []string{"sre"} },
			req: req(bgPod), contains: []string{unsignedTag, unsignedDigest}},
		{name: "image exempt from the signature rule left alone", cfg: func(c *config.Admission) {
			c.Exemptions = []config.AdmissionExemption{{Image: f.host + "/test/unsigned", Rules: []string{RuleSignature}, Reason: "mirror"}}
		}, req: req(pod(ctr("app", unsignedTag, ""))), allowed: true},
		{name: "image exempt from other rules only still pinned and verified", cfg: func(c *config.Admission) {
			c.Exemptions = []config.AdmissionExemption{{Image: f.host + "/test/unsigned", Rules: []string{RuleNonRoot}, Reason: "legacy"}}
		}, req: req(pod(ctr("app", unsignedTag, ""))), contains: []string{unsignedDigest}},
		{name: "namespace exempt from every rule left alone", cfg: func(c *config.Admission) {
			c.Exemptions = []config.AdmissionExemption{{Namespace: "fn", Reason: "system"}}
		}, req: req(pod(ctr("app", unsignedTag, ""))), allowed: true},
		{name: "signatures off: nothing pinned", cfg: func(c *config.Admission) { c.VerifySignatures = false },
			req: req(pod(ctr("app", goodTag, ""))), allowed: true},
		{name: "invalid reference left to validation", req: req(pod(ctr("app", "UPPER/Case:v1", ""))), allowed: true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e := f.evaluator(t, c.cfg, now)
			m := e.Mutate(context.Background(), c.req)
			if m.Allowed != c.allowed {
				t.Fatalf("allowed %v, want %v: %s", m.Allowed, c.allowed, m.Message())
			}
			msg := m.Message()
			if !m.Allowed {
				t.Log(msg)
			}
			for _, s := range c.contains {
				if !strings.Contains(msg, s) {
					t.Errorf("%q missing from:\n%s", s, msg)
				}
			}
			if !m.Allowed && len(m.Pins) > 0 {
				t.Fatalf("refused with pins: %+v", m.Pins)
			}
			if len(m.Pins) != len(c.pins) {
				t.Fatalf("pins %+v, want %+v", m.Pins, c.pins)
			}
			for i, p := range m.Pins {
				if p.Pointer != c.pins[i].pointer || p.Image != c.pins[i].image || p.Verified != c.verified {
					t.Errorf("pin %d: %+v, want %+v verified=%v", i, p, c.pins[i], c.verified)
				}
			}
		})
	}
}

// The seam between the two webhooks: the object the mutation's patch
// produces passes validation (which still refuses the tag it replaced), and
// a tag re-pointed to an unsigned image after the mutation cannot be
// carried through: validation checks the digest in the object.
func TestMutatedObjectPassesValidation(t *testing.T) {
	f := newFixture(t)
	now := time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)
	e := f.evaluator(t, nil, now)
	for _, kind := range []string{"Pod", "Deployment", "CronJob"} {
		t.Run(kind, func(t *testing.T) {
			spec := `{"securityContext":{"runAsUser":1000},"initContainers":[` + ctr("init", f.tags["other"], "") + `],"containers":[` + ctr("app", f.tags["nonroot"], "") + `]}`
			raw := map[string]string{
				"Pod":        `{"metadata":{"name":"p","namespace":"fn"},"spec":` + spec + `}`,
				"Deployment": `{"metadata":{"name":"d","namespace":"fn"},"spec":{"template":{"spec":` + spec + `}}}`,
				"CronJob":    `{"metadata":{"name":"c","namespace":"fn"},"spec":{"jobTemplate":{"spec":{"template":{"spec":` + spec + `}}}}}`,
			}[kind]
			w := decode(t, kind, raw)
			before := e.Evaluate(context.Background(), Request{Operation: "CREATE", Namespace: "fn", Workload: w})
			if before.Allowed || !strings.Contains(before.Message(), "not pinned by digest") {
				t.Fatalf("validation of the tag: %s", before.Message())
			}
			m := e.Mutate(context.Background(), MutateRequest{Request: Request{Operation: "CREATE", Namespace: "fn", Workload: decode(t, kind, raw)}})
			if !m.Allowed || len(m.Pins) != 2 {
				t.Fatalf("mutation: %+v %s", m.Pins, m.Message())
			}
			p, err := objects.ImagePatch(m.Changes())
			if err != nil {
				t.Fatal(err)
			}
			jp, err := jsonpatch.DecodePatch(p)
			if err != nil {
				t.Fatal(err)
			}
			out, err := jp.Apply([]byte(raw))
			if err != nil {
				t.Fatal(err)
			}
			gv := map[string]schema.GroupVersionKind{"Pod": {Version: "v1", Kind: "Pod"}, "Deployment": {Group: "apps", Version: "v1", Kind: "Deployment"},
				"CronJob": {Group: "batch", Version: "v1", Kind: "CronJob"}}[kind]
			pw, err := objects.Decode(gv, out)
			if err != nil {
				t.Fatal(err)
			}
			after := e.Evaluate(context.Background(), Request{Operation: "CREATE", Namespace: "fn", Workload: pw})
			if !after.Allowed {
				t.Fatalf("the mutated object is refused: %s\n%s", after.Message(), out)
			}
			// Reinvocation changes nothing: every image is pinned now.
			if again := e.Mutate(context.Background(), MutateRequest{Request: Request{Operation: "CREATE", Namespace: "fn", Workload: pw}}); !again.Allowed || len(again.Pins) != 0 {
				t.Fatalf("second mutation: %+v", again.Pins)
			}
		})
	}
	// A pinned tag whose digest is then swapped for an unsigned one.
	unsigned := pushImage(t, f.reg, f.host+"/test/unsigned:v1", "1000")
	_, ud, _ := strings.Cut(unsigned, "@")
	swapped := decode(t, "Pod", podJSON("p", "", `{"runAsUser":1000}`, ctr("app", f.tags["nonroot"]+"@"+ud, "")))
	if d := e.Evaluate(context.Background(), Request{Operation: "CREATE", Namespace: "fn", Workload: swapped}); d.Allowed || !strings.Contains(d.Message(), "no signature") {
		t.Fatalf("a swapped digest behind a signed tag: %s", d.Message())
	}
}
