package admission

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/gantry-dev/gantry/admission/images"
	"github.com/gantry-dev/gantry/admission/objects"
	"github.com/gantry-dev/gantry/admission/verification"
	"github.com/gantry-dev/gantry/config"
	"github.com/gantry-dev/gantry/internal/oci"
)

// fakeVerifier answers from a table keyed by digest. Registry reads and
// signature checks are real elsewhere (webhook e2e); here the table makes
// each verdict explicit.
type fakeVerifier struct {
	mu      sync.Mutex
	results map[string]verification.Result
	errs    map[string]error
	delay   map[string]time.Duration
	calls   int
}

func (f *fakeVerifier) PolicyVersion() string { return "v1" }

func (f *fakeVerifier) Verify(ctx context.Context, d name.Digest) (verification.Result, error) {
	f.mu.Lock()
	f.calls++
	r, ok := f.results[d.DigestStr()]
	err := f.errs[d.DigestStr()]
	delay := f.delay[d.DigestStr()]
	f.mu.Unlock()
	if delay > 0 {
		select {
		case <-time.After(delay):
		case <-ctx.Done():
			return verification.Result{}, ctx.Err()
		}
	}
	if err != nil {
		return verification.Result{}, err
	}
	if !ok {
		return verification.Result{Reason: verification.ReasonNoSignature, Message: "no signature found"}, nil
	}
	return r, nil
}

type fixture struct {
	reg      *oci.Client
	host     string
	images   map[string]string // role → repo@digest
	tags     map[string]string // role → repo:tag
	verifier *fakeVerifier
}

func pushImage(t *testing.T, reg *oci.Client, ref string, user string) string {
	t.Helper()
	img, err := random.Image(64, 1)
	if err != nil {
		t.Fatal(err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = "linux", "amd64"
	cf.Config.User = user
	img, err = mutate.ConfigFile(img, cf)
	if err != nil {
		t.Fatal(err)
	}
	r, err := reg.ParseReference(ref)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(r, img, reg.RemoteOptions(context.Background())...); err != nil {
		t.Fatal(err)
	}
	d, _ := img.Digest()
	return r.Context().Name() + "@" + d.String()
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	srv := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	t.Cleanup(srv.Close)
	host := strings.TrimPrefix(srv.URL, "http://")
	reg, err := oci.New(config.Registry{Insecure: []string{host}, Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{reg: reg, host: host, images: map[string]string{}, tags: map[string]string{},
		verifier: &fakeVerifier{results: map[string]verification.Result{}, errs: map[string]error{}, delay: map[string]time.Duration{}}}
	for role, user := range map[string]string{"nonroot": "1000", "root": "", "rootname": "root", "zero": "0:0", "named": "app", "other": "1000:1000"} {
		f.images[role] = pushImage(t, reg, host+"/test/"+role+":v1", user)
		f.tags[role] = host + "/test/" + role + ":v1"
	}
	// A two-platform index where one platform runs as root.
	var idx v1.ImageIndex = empty.Index
	for _, p := range []struct{ arch, user string }{{"amd64", "1000"}, {"arm64", ""}} {
		img, _ := random.Image(32, 1)
		cf, _ := img.ConfigFile()
		cf = cf.DeepCopy()
		cf.OS, cf.Architecture, cf.Config.User = "linux", p.arch, p.user
		img, _ = mutate.ConfigFile(img, cf)
		idx = mutate.AppendManifests(idx, mutate.IndexAddendum{Add: img, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: p.arch}}})
	}
	ir, _ := reg.ParseReference(host + "/test/multi:v1")
	if err := remote.WriteIndex(ir, idx, reg.RemoteOptions(context.Background())...); err != nil {
		t.Fatal(err)
	}
	id, _ := idx.Digest()
	f.images["multi"] = ir.Context().Name() + "@" + id.String()
	// A user with spaces around a number is a name to the runtime (which
	// does not trim), so it proves nothing about the UID.
	f.images["spaced"] = pushImage(t, reg, host+"/test/spaced:v1", " 1000")
	// An index whose linux/amd64 image is non-root and whose second
	// entry, without a platform, runs as root: a runtime may pick an
	// entry without a platform for any node.
	nonroot := userImage(t, "1000")
	hidden := mutate.AppendManifests(empty.Index,
		mutate.IndexAddendum{Add: nonroot, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: "amd64"}}},
		mutate.IndexAddendum{Add: userImage(t, "")})
	f.images["hidden"] = pushIndex(t, reg, host+"/test/hidden:v1", hidden)
	// An index inside an index.
	inner := mutate.AppendManifests(empty.Index,
		mutate.IndexAddendum{Add: userImage(t, ""), Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: "arm64"}}})
	nested := mutate.AppendManifests(empty.Index,
		mutate.IndexAddendum{Add: nonroot, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: "amd64"}}},
		mutate.IndexAddendum{Add: inner, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: "arm64"}}})
	f.images["nested"] = pushIndex(t, reg, host+"/test/nested:v1", nested)
	for _, role := range []string{"nonroot", "root", "named", "multi", "other", "spaced", "hidden", "nested"} {
		f.sign(role)
	}
	return f
}

// userImage is a random linux/amd64 image whose config has USER user.
func userImage(t *testing.T, user string) v1.Image {
	t.Helper()
	img, err := random.Image(32, 1)
	if err != nil {
		t.Fatal(err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture, cf.Config.User = "linux", "amd64", user
	img, err = mutate.ConfigFile(img, cf)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

// pushIndex writes idx (and everything it holds) to ref and returns
// repo@digest.
func pushIndex(t *testing.T, reg *oci.Client, ref string, idx v1.ImageIndex) string {
	t.Helper()
	r, err := reg.ParseReference(ref)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.WriteIndex(r, idx, reg.RemoteOptions(context.Background())...); err != nil {
		t.Fatal(err)
	}
	d, err := idx.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return r.Context().Name() + "@" + d.String()
}

func (f *fixture) sign(role string) {
	_, d, _ := strings.Cut(f.images[role], "@")
	f.verifier.results[d] = verification.Result{Verified: true, Matched: []string{"ci"}}
}

func (f *fixture) digest(role string) string {
	_, d, _ := strings.Cut(f.images[role], "@")
	return d
}

func (f *fixture) evaluator(t *testing.T, mutateCfg func(*config.Admission), now time.Time) *Evaluator {
	t.Helper()
	cfg := config.DefaultAdmission()
	cfg.Budget = 2 * time.Second
	if mutateCfg != nil {
		mutateCfg(&cfg)
	}
	e, err := New(cfg, Options{
		Verifier: verification.NewCache(f.verifier, verification.Options{PositiveTTL: time.Minute, NegativeTTL: time.Second, MaxEntries: 100}),
		Images:   images.New(f.reg, images.Options{MaxEntries: 100, TagTTL: time.Second}),
		Registry: f.reg,
		Now:      func() time.Time { return now },
	})
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// restrictedContainer is a container security context that passes PSS
// restricted.
const restrictedSC = `{"allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"]}, "runAsNonRoot": true, "seccompProfile": {"type": "RuntimeDefault"}}`

func podJSON(name, annotations, podSC string, containers ...string) string {
	if podSC == "" {
		podSC = "{}"
	}
	if annotations == "" {
		annotations = "{}"
	}
	return fmt.Sprintf(`{"apiVersion":"v1","kind":"Pod","metadata":{"name":%q,"namespace":"fn","annotations":%s},"spec":{"securityContext":%s,"containers":[%s]}}`,
		name, annotations, podSC, strings.Join(containers, ","))
}

func ctr(name, image, sc string) string {
	if sc == "" {
		sc = restrictedSC
	}
	return fmt.Sprintf(`{"name":%q,"image":%q,"securityContext":%s}`, name, image, sc)
}

func decode(t *testing.T, kind, raw string) *objects.Workload {
	t.Helper()
	gv := map[string]string{"Pod": "v1", "ReplicationController": "v1", "Deployment": "apps/v1", "ReplicaSet": "apps/v1",
		"StatefulSet": "apps/v1", "DaemonSet": "apps/v1", "Job": "batch/v1", "CronJob": "batch/v1"}[kind]
	g, v, ok := strings.Cut(gv, "/")
	if !ok {
		g, v = "", gv
	}
	w, err := objects.Decode(schema.GroupVersionKind{Group: g, Version: v, Kind: kind}, []byte(raw))
	if err != nil {
		t.Fatal(err)
	}
	return w
}

func TestEvaluate(t *testing.T) {
	f := newFixture(t)
	now := time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)
	f.verifier.results[f.digest("named")] = verification.Result{Verified: true}
	f.verifier.results[f.digest("zero")] = verification.Result{Reason: verification.ReasonUntrusted, Message: "signed by an unknown key"}
	f.verifier.errs[f.digest("rootname")] = errors.New("dial tcp: connection refused")

	unsignedImg := pushImage(t, f.reg, f.host+"/test/unsigned:v1", "1000")
	slowImg := pushImage(t, f.reg, f.host+"/test/slow:v1", "1000")
	_, slowDigest, _ := strings.Cut(slowImg, "@")
	f.verifier.delay[slowDigest] = time.Minute
	f.verifier.results[slowDigest] = verification.Result{Verified: true}

	good := f.images["nonroot"]
	bg := func(until time.Time) string {
		return fmt.Sprintf(`{"gantry.dev/break-glass-until":%q}`, until.Format(time.RFC3339))
	}
	bgCfg := func(c *config.Admission) { c.BreakGlass.Groups = []string{"sre"} }

	type tc struct {
		name     string
		cfg      func(*config.Admission)
		req      Request
		allowed  bool
		rules    []string // rules of the violations, in order
		contains []string // substrings of the message (deny) or warnings
		warn     bool     // expect warnings
	}
	pod := func(raw string) *objects.Workload { return decode(t, "Pod", raw) }
	req := func(w *objects.Workload) Request {
		return Request{Operation: "CREATE", Namespace: "fn", Username: "alice", Groups: []string{"dev"}, Workload: w}
	}
	withUser := func(r Request, user string, groups ...string) Request {
		r.Username, r.Groups = user, groups
		return r
	}
	cases := []tc{
		{name: "signed restricted non-root pod admitted", req: req(pod(podJSON("ok", "", "", ctr("app", good, "")))), allowed: true},
		{name: "unsigned image", req: req(pod(podJSON("p", "", "", ctr("app", unsignedImg, "")))),
			rules: []string{RuleSignature}, contains: []string{unsignedImg, "no signature"}},
		{name: "untrusted key", req: req(pod(podJSON("p", "", `{"runAsUser":1000}`, ctr("app", f.images["zero"], "")))),
			rules: []string{RuleSignature}, contains: []string{"untrusted key", "signed by an unknown key"}},
		{name: "registry unreachable for signatures", req: req(pod(podJSON("p", "", `{"runAsUser":1000}`, ctr("app", f.images["rootname"], "")))),
			rules: []string{RuleSignature}, contains: []string{"could not verify: registry unreachable"}},
		{name: "verification past the budget is a registry timeout", cfg: func(c *config.Admission) { c.Budget = 200 * time.Millisecond },
			req:   req(pod(podJSON("p", "", "", ctr("app", slowImg, "")))),
			rules: []string{RuleSignature}, contains: []string{"could not verify: registry timeout"}},
		{name: "tag refused with requireDigest", req: req(pod(podJSON("p", "", "", ctr("app", f.tags["nonroot"], "")))),
			rules: []string{RuleSignature}, contains: []string{"not pinned by digest"}},
		{name: "tag resolved without requireDigest", cfg: func(c *config.Admission) { c.RequireDigest = false },
			req: req(pod(podJSON("p", "", "", ctr("app", f.tags["nonroot"], "")))), allowed: true},
		{name: "tag of a root image resolved and refused", cfg: func(c *config.Admission) { c.RequireDigest = false },
			req: req(pod(podJSON("p", "", "", ctr("app", f.tags["root"], "")))), rules: []string{RuleNonRoot}, contains: []string{`USER ""`}},
		{name: "privileged", req: req(pod(podJSON("p", "", "", ctr("app", good, `{"privileged":true,"allowPrivilegeEscalation":false,"capabilities":{"drop":["ALL"]},"runAsNonRoot":true,"seccompProfile":{"type":"RuntimeDefault"}}`)))),
			rules: []string{RulePodSecurity}, contains: []string{"privileged", `container "app" must not set securityContext.privileged=true`}},
		{name: "privileged refused at baseline too", cfg: func(c *config.Admission) { c.Namespaces = []config.AdmissionNamespace{{Name: "fn", Level: "baseline"}} },
			req:   req(pod(podJSON("p", "", `{"runAsUser":1000}`, ctr("app", good, `{"privileged":true}`)))),
			rules: []string{RulePodSecurity}, contains: []string{`"baseline:latest"`}},
		{name: "baseline namespace admits a non-restricted but non-root pod", cfg: func(c *config.Admission) { c.Namespaces = []config.AdmissionNamespace{{Name: "fn", Level: "baseline"}} },
			req: req(pod(podJSON("p", "", "", ctr("app", good, `{}`)))), allowed: true},
		{name: "runAsUser 0 refused at baseline", cfg: func(c *config.Admission) { c.Namespaces = []config.AdmissionNamespace{{Name: "fn", Level: "baseline"}} },
			req:   req(pod(podJSON("p", "", `{"runAsUser":0}`, ctr("app", good, `{}`)))),
			rules: []string{RuleNonRoot}, contains: []string{"runAsUser is 0"}},
		{name: "runAsUser 0 at restricted", req: req(pod(podJSON("p", "", "", ctr("app", good, `{"allowPrivilegeEscalation":false,"capabilities":{"drop":["ALL"]},"runAsNonRoot":true,"runAsUser":0,"seccompProfile":{"type":"RuntimeDefault"}}`)))),
			rules: []string{RulePodSecurity, RuleNonRoot}, contains: []string{"runAsUser=0", "runAsUser is 0"}},
		{name: "image runs as root by default", req: req(pod(podJSON("p", "", "", ctr("app", f.images["root"], "")))),
			rules: []string{RuleNonRoot}, contains: []string{"runs as root: the pod sets no runAsUser", `USER ""`}},
		{name: "image with non-numeric user", req: req(pod(podJSON("p", "", "", ctr("app", f.images["named"], "")))),
			rules: []string{RuleNonRoot}, contains: []string{`non-numeric USER "app"`}},
		{name: "index with a root platform", req: req(pod(podJSON("p", "", "", ctr("app", f.images["multi"], "")))),
			rules: []string{RuleNonRoot}, contains: []string{"linux/arm64"}},
		{name: "image user with surrounding spaces is a name, not a UID", req: req(pod(podJSON("p", "", "", ctr("app", f.images["spaced"], "")))),
			rules: []string{RuleNonRoot}, contains: []string{`non-numeric USER " 1000"`}},
		{name: "index entry without a platform is checked", req: req(pod(podJSON("p", "", "", ctr("app", f.images["hidden"], "")))),
			rules: []string{RuleNonRoot}, contains: []string{"runs as root", "without a platform"}},
		{name: "index inside an index is refused", req: req(pod(podJSON("p", "", "", ctr("app", f.images["nested"], "")))),
			rules: []string{RuleNonRoot}, contains: []string{"cannot tell the user", "index inside an index"}},
		{name: "root image with runAsUser set is fine", req: req(pod(podJSON("p", "", `{"runAsUser":1000}`, ctr("app", f.images["root"], "")))), allowed: true},
		{name: "user:group image", req: req(pod(podJSON("p", "", "", ctr("app", f.images["other"], "")))), allowed: true},
		{name: "every failure listed at once", req: req(pod(podJSON("p", "", "",
			ctr("a", unsignedImg, ""), ctr("b", f.images["root"], `{"privileged":true}`)))),
			rules:    []string{RuleSignature, RulePodSecurity, RulePodSecurity, RulePodSecurity, RulePodSecurity, RulePodSecurity, RuleNonRoot},
			contains: []string{"Pod fn/p refused (7 violations)", unsignedImg, `container "b"`}},
		{name: "warn mode admits with warnings", cfg: func(c *config.Admission) { c.Namespaces = []config.AdmissionNamespace{{Name: "fn", Mode: "warn"}} },
			req: req(pod(podJSON("p", "", "", ctr("app", unsignedImg, "")))), allowed: true, rules: []string{RuleSignature}, warn: true, contains: []string{"no signature"}},
		{name: "audit mode admits silently", cfg: func(c *config.Admission) { c.Mode = "audit" },
			req: req(pod(podJSON("p", "", "", ctr("app", unsignedImg, "")))), allowed: true, rules: []string{RuleSignature}},
		{name: "namespace exemption", cfg: func(c *config.Admission) {
			c.Exemptions = []config.AdmissionExemption{{Namespace: "fn", Reason: "legacy"}}
		}, req: req(pod(podJSON("p", "", "", ctr("app", unsignedImg, `{"privileged":true}`)))), allowed: true},
		{name: "exemption of another namespace does not apply", cfg: func(c *config.Admission) {
			c.Exemptions = []config.AdmissionExemption{{Namespace: "other", Reason: "legacy"}}
		}, req: req(pod(podJSON("p", "", "", ctr("app", unsignedImg, "")))), rules: []string{RuleSignature}},
		{name: "image exemption for signatures only keeps nonRoot", cfg: func(c *config.Admission) {
			c.Exemptions = []config.AdmissionExemption{{Image: f.host + "/test/*", Rules: []string{"signature"}, Reason: "mirror"}}
		}, req: req(pod(podJSON("p", "", "", ctr("a", unsignedImg, ""), ctr("b", f.images["root"], "")))), rules: []string{RuleNonRoot}},
		{name: "user exemption", cfg: func(c *config.Admission) {
			c.Exemptions = []config.AdmissionExemption{{User: "alice", Reason: "bootstrap"}}
		}, req: req(pod(podJSON("p", "", "", ctr("app", unsignedImg, "")))), allowed: true},
		{name: "group exemption", cfg: func(c *config.Admission) {
			c.Exemptions = []config.AdmissionExemption{{Group: "dev", Rules: []string{"signature"}, Reason: "dev loop"}}
		}, req: req(pod(podJSON("p", "", "", ctr("app", unsignedImg, "")))), allowed: true},
		{name: "service account exemption", cfg: func(c *config.Admission) {
			c.Exemptions = []config.AdmissionExemption{{ServiceAccount: "ci/deployer", Reason: "gitops"}}
		}, req: withUser(req(pod(podJSON("p", "", "", ctr("app", unsignedImg, "")))), "system:serviceaccount:ci:deployer"), allowed: true},
		{name: "break-glass by a group member", cfg: bgCfg,
			req: withUser(req(pod(podJSON("p", bg(now.Add(time.Hour)), "", ctr("app", unsignedImg, "")))), "bob", "sre"), allowed: true, warn: true,
			rules: []string{RuleSignature}, contains: []string{"break-glass"}},
		{name: "break-glass by a non-member is refused", cfg: bgCfg,
			req: req(pod(podJSON("p", bg(now.Add(time.Hour)), "", ctr("app", unsignedImg, "")))), rules: []string{RuleBreakGlass},
			contains: []string{`"alice", who is not in a break-glass group`}},
		{name: "expired break-glass set by a member is refused", cfg: bgCfg,
			req: withUser(req(pod(podJSON("p", bg(now.Add(-time.Minute)), "", ctr("app", unsignedImg, "")))), "bob", "sre"), rules: []string{RuleBreakGlass},
			contains: []string{"expired at 2026-11-01T11:59:00Z"}},
		{name: "break-glass too far ahead is refused", cfg: bgCfg,
			req: withUser(req(pod(podJSON("p", bg(now.Add(48*time.Hour)), "", ctr("app", unsignedImg, "")))), "bob", "sre"), rules: []string{RuleBreakGlass},
			contains: []string{"more than 24h0m0s ahead"}},
		{name: "break-glass propagated by a controller", cfg: bgCfg,
			req: withUser(req(pod(podJSON("p", bg(now.Add(time.Hour)), "", ctr("app", unsignedImg, "")))), "system:serviceaccount:kube-system:replicaset-controller"), allowed: true, warn: true, rules: []string{RuleSignature}},
		{name: "break-glass disabled without groups",
			req: withUser(req(pod(podJSON("p", bg(now.Add(time.Hour)), "", ctr("app", unsignedImg, "")))), "bob", "sre"), rules: []string{RuleSignature}},
		{name: "ephemeral container with a bad image", req: req(pod(strings.Replace(podJSON("p", "", "", ctr("app", good, "")),
			`"containers":`, `"ephemeralContainers":[{"name":"debug","image":"`+unsignedImg+`","securityContext":`+restrictedSC+`}],"containers":`, 1))),
			rules: []string{RuleSignature}, contains: []string{unsignedImg}},
		{name: "init container running as root", req: req(pod(strings.Replace(podJSON("p", "", "", ctr("app", good, "")),
			`"containers":`, `"initContainers":[{"name":"init","image":"`+f.images["root"]+`","securityContext":`+restrictedSC+`}],"containers":`, 1))),
			rules: []string{RuleNonRoot}, contains: []string{`container "init"`}},
		{name: "unchanged update is not re-judged", req: func() Request {
			w := pod(podJSON("p", "", "", ctr("app", unsignedImg, "")))
			r := req(w)
			r.Operation, r.Old = "UPDATE", pod(podJSON("p", `{"x":"y"}`, "", ctr("app", unsignedImg, "")))
			return r
		}(), allowed: true},
		{name: "changed update is judged", req: func() Request {
			r := req(pod(podJSON("p", "", "", ctr("app", unsignedImg, ""))))
			r.Operation, r.Old = "UPDATE", pod(podJSON("p", "", "", ctr("app", good, "")))
			return r
		}(), rules: []string{RuleSignature}},
	}
	// The same bad template in every workload kind.
	badSpec := fmt.Sprintf(`{"containers":[{"name":"app","image":%q,"securityContext":{"privileged":true}}]}`, f.images["root"])
	tmpl := `{"metadata":{"labels":{"a":"b"}},"spec":` + badSpec + `}`
	for kind, spec := range map[string]string{
		"Deployment":            `{"selector":{"matchLabels":{"a":"b"}},"template":` + tmpl + `}`,
		"ReplicaSet":            `{"selector":{"matchLabels":{"a":"b"}},"template":` + tmpl + `}`,
		"StatefulSet":           `{"selector":{"matchLabels":{"a":"b"}},"template":` + tmpl + `}`,
		"DaemonSet":             `{"selector":{"matchLabels":{"a":"b"}},"template":` + tmpl + `}`,
		"Job":                   `{"template":` + tmpl + `}`,
		"CronJob":               `{"schedule":"* * * * *","jobTemplate":{"spec":{"template":` + tmpl + `}}}`,
		"ReplicationController": `{"template":` + tmpl + `}`,
	} {
		raw := fmt.Sprintf(`{"metadata":{"name":"w","namespace":"fn"},"spec":%s}`, spec)
		cases = append(cases, tc{name: kind + " with a bad template", req: req(decode(t, kind, raw)),
			rules:    []string{RulePodSecurity, RulePodSecurity, RulePodSecurity, RulePodSecurity, RulePodSecurity, RuleNonRoot},
			contains: []string{kind + " fn/w refused", "privileged", "runs as root"}})
	}

	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e := f.evaluator(t, c.cfg, now)
			d := e.Evaluate(context.Background(), c.req)
			var rules []string
			for _, v := range d.Violations {
				rules = append(rules, v.Rule)
			}
			if d.Allowed != c.allowed || strings.Join(rules, ",") != strings.Join(c.rules, ",") {
				t.Fatalf("allowed=%v rules=%v, want allowed=%v rules=%v\n%s", d.Allowed, rules, c.allowed, c.rules, d.Message())
			}
			text := d.Message() + "\n" + strings.Join(d.Warnings(), "\n")
			for _, s := range c.contains {
				if !strings.Contains(text, s) {
					t.Errorf("%q missing from:\n%s", s, text)
				}
			}
			if c.warn != (len(d.Warnings()) > 0) {
				t.Errorf("warnings %q, want some: %v", d.Warnings(), c.warn)
			}
		})
	}
}

func TestWarmPathMakesNoRegistryCalls(t *testing.T) {
	f := newFixture(t)
	e := f.evaluator(t, nil, time.Now())
	r := Request{Operation: "CREATE", Namespace: "fn", Workload: decode(t, "Pod", podJSON("p", "", "", ctr("a", f.images["nonroot"], ""), ctr("b", f.images["multi"], `{"runAsUser":5,"allowPrivilegeEscalation":false,"capabilities":{"drop":["ALL"]},"runAsNonRoot":true,"seccompProfile":{"type":"RuntimeDefault"}}`)))}
	if d := e.Evaluate(context.Background(), r); !d.Allowed {
		t.Fatal(d.Message())
	}
	calls, verifies := e.o.Images.RegistryCalls(), f.verifier.calls
	if calls == 0 || verifies != 2 {
		t.Fatalf("cold path: %d registry calls, %d verifications", calls, verifies)
	}
	for range 3 {
		if d := e.Evaluate(context.Background(), r); !d.Allowed {
			t.Fatal(d.Message())
		}
	}
	if e.o.Images.RegistryCalls() != calls || f.verifier.calls != verifies {
		t.Fatalf("warm path made %d registry calls and %d verifications", e.o.Images.RegistryCalls()-calls, f.verifier.calls-verifies)
	}
}

func TestMessageFitsLimits(t *testing.T) {
	var cs []string
	for i := range 300 {
		cs = append(cs, ctr(fmt.Sprintf("c%03d", i), "example.com/x:latest", `{"privileged":true,"runAsUser":0}`))
	}
	cfg := config.DefaultAdmission()
	cfg.VerifySignatures = false
	e, err := New(cfg, Options{})
	if err != nil {
		t.Fatal(err)
	}
	d := e.Evaluate(context.Background(), Request{Operation: "CREATE", Namespace: "fn", Workload: decode(t, "Pod", podJSON("p", "", "", cs...))})
	if d.Allowed || len(d.Violations) < 300 {
		t.Fatalf("allowed=%v, %d violations", d.Allowed, len(d.Violations))
	}
	if n := len([]rune(d.Message())); n > MaxMessageRunes || !strings.Contains(d.Message(), "more") {
		t.Fatalf("message of %d runes:\n%s", n, d.Message())
	}
	d.Mode, d.Allowed = ModeWarn, true
	total := 0
	for _, w := range d.Warnings() {
		if n := len([]rune(w)); n > MaxWarningRunes {
			t.Fatalf("warning of %d runes", n)
		}
		total += len([]rune(w))
	}
	if total > MaxWarningsRunes {
		t.Fatalf("warnings total %d runes", total)
	}
}

func TestNoSignerPolicyFailsClosed(t *testing.T) {
	cfg := config.DefaultAdmission()
	e, err := New(cfg, Options{})
	if err != nil {
		t.Fatal(err)
	}
	d := e.Evaluate(context.Background(), Request{Operation: "CREATE", Namespace: "fn",
		Workload: decode(t, "Pod", podJSON("p", "", `{"runAsUser":1000}`, ctr("a", "example.com/x@sha256:"+strings.Repeat("a", 64), "")))})
	if d.Allowed || !strings.Contains(d.Message(), "signerPolicy") {
		t.Fatalf("allowed=%v: %s", d.Allowed, d.Message())
	}
}

func TestParseUser(t *testing.T) {
	for _, c := range []struct {
		in            string
		root, numeric bool
	}{
		{"", true, true}, {"0", true, true}, {"root", true, false}, {"0:0", true, true}, {"root:wheel", true, false},
		{"1000", false, true}, {"1000:0", false, true}, {"app", false, false}, {"00", true, true},
		{"-1", false, false}, {"+1000", false, false}, {"99999999999", false, false},
		// The runtime does not trim: with spaces the user is looked up by
		// name, so it is neither a number nor known to be root.
		{" 0 ", false, false}, {" 1000", false, false}, {"1000 ", false, false}, {"1000\t:0", false, false}, {"\n1000", false, false},
	} {
		u := images.ParseUser(c.in)
		if u.Root != c.root || u.Numeric != c.numeric {
			t.Errorf("ParseUser(%q) = root %v numeric %v, want %v %v", c.in, u.Root, u.Numeric, c.root, c.numeric)
		}
	}
}

// A registry that accepts connections and never answers: the review ends at
// the budget with "registry timeout" (never hangs, never allows).
func TestStalledRegistryTimesOut(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			defer c.Close() // held open, silent, until the test ends
		}
	}()
	host := ln.Addr().String()
	reg, err := oci.New(config.Registry{Insecure: []string{host}, Timeout: 30 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	cfg := config.DefaultAdmission()
	cfg.Budget = 300 * time.Millisecond
	e, err := New(cfg, Options{Registry: reg, Images: images.New(reg, images.Options{}),
		Verifier: &fakeVerifier{results: map[string]verification.Result{}, errs: map[string]error{}, delay: map[string]time.Duration{}}})
	if err != nil {
		t.Fatal(err)
	}
	img := host + "/fn/app@sha256:" + strings.Repeat("c", 64)
	d := e.Evaluate(context.Background(), Request{Operation: "CREATE", Namespace: "fn", Workload: decode(t, "Pod", podJSON("p", "", "", ctr("a", img, "")))})
	if d.Allowed || !strings.Contains(d.Message(), "nonRoot") || !strings.Contains(d.Message(), "could not verify: registry timeout") {
		t.Fatalf("allowed=%v:\n%s", d.Allowed, d.Message())
	}
}
