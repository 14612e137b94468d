package admission

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/gantry-dev/gantry/admission/objects"
	"github.com/gantry-dev/gantry/config"
)

// TestBreakGlassReview: who may add, extend and keep the break-glass
// annotation, on which objects, and what it then admits. Signatures are
// off (no registry): a privileged container is the violation.
func TestBreakGlassReview(t *testing.T) {
	now := time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)
	at := func(d time.Duration) string { return now.Add(d).Format(time.RFC3339) }
	valid, later, expired, tooFar := at(30*time.Minute), at(50*time.Minute), at(-time.Minute), at(2*time.Hour)

	const (
		clean      = `{"allowPrivilegeEscalation":false,"capabilities":{"drop":["ALL"]}}`
		privileged = `{"privileged":true,"allowPrivilegeEscalation":false,"capabilities":{"drop":["ALL"]}}`
		podSC      = `{"runAsNonRoot":true,"runAsUser":1000,"seccompProfile":{"type":"RuntimeDefault"}}`
	)
	image := func(n int) string { return fmt.Sprintf("registry.example/fn/app@sha256:%064x", n) }
	// ann renders annotations: "" none, else the break-glass value (plus
	// extra pairs "k=v").
	ann := func(bg string, extra ...string) string {
		var kv []string
		if bg != "" {
			kv = append(kv, fmt.Sprintf("%q:%q", "gantry.dev/break-glass-until", bg))
		}
		for _, e := range extra {
			k, v, _ := strings.Cut(e, "=")
			kv = append(kv, fmt.Sprintf("%q:%q", k, v))
		}
		return "{" + strings.Join(kv, ",") + "}"
	}
	spec := func(sc string, img int) string {
		return fmt.Sprintf(`{"securityContext":%s,"containers":[{"name":"app","image":%q,"securityContext":%s}]}`, podSC, image(img), sc)
	}
	type obj struct {
		kind, objAnn, tmplAnn, sc string
		img                       int
		extra                     []string // more template annotations, "k=v"
	}
	raw := func(o obj) string {
		if o.sc == "" {
			o.sc = clean
		}
		if o.kind == "" {
			o.kind = "Deployment"
		}
		switch o.kind {
		case "Pod":
			return fmt.Sprintf(`{"metadata":{"name":"w","namespace":"fn","annotations":%s},"spec":%s}`, ann(o.tmplAnn, o.extra...), spec(o.sc, o.img))
		case "CronJob":
			return fmt.Sprintf(`{"metadata":{"name":"w","namespace":"fn","annotations":%s},"spec":{"schedule":"* * * * *","jobTemplate":{"spec":{"template":{"metadata":{"annotations":%s},"spec":%s}}}}}`,
				ann(o.objAnn), ann(o.tmplAnn, o.extra...), spec(o.sc, o.img))
		}
		return fmt.Sprintf(`{"metadata":{"name":"w","namespace":"fn","annotations":%s},"spec":{"selector":{"matchLabels":{"a":"b"}},"template":{"metadata":{"labels":{"a":"b"},"annotations":%s},"spec":%s}}}`,
			ann(o.objAnn), ann(o.tmplAnn, o.extra...), spec(o.sc, o.img))
	}
	type who struct {
		user   string
		groups []string
	}
	var (
		member     = who{"bob", []string{"sre", "system:authenticated"}}
		other      = who{"mallory", []string{"dev", "system:authenticated"}}
		rsCtl      = who{"system:serviceaccount:kube-system:replicaset-controller", []string{"system:serviceaccounts"}}
		depCtl     = who{"system:serviceaccount:kube-system:deployment-controller", []string{"system:serviceaccounts"}}
		deployerSA = who{"system:serviceaccount:ci:deployer", []string{"system:serviceaccounts"}}
	)
	cases := []struct {
		name string
		cfg  func(*config.Admission)
		by   who
		old  *obj // nil: CREATE
		// oldUnreadable: an UPDATE whose old object could not be decoded.
		oldUnreadable bool
		new           obj
		allowed       bool
		rules         []string
		unchanged     bool
		until         string   // Decision.BreakGlass
		contains      []string // in the message and warnings
	}{
		// Members.
		{name: "member breaks the glass", by: member, new: obj{tmplAnn: valid, sc: privileged},
			allowed: true, rules: []string{RulePodSecurity}, until: valid, contains: []string{"break-glass: admitted despite 1 violation until " + valid}},
		{name: "member arms a clean Deployment", by: member, new: obj{tmplAnn: valid},
			allowed: true, contains: []string{"annotation accepted until " + valid + " (nothing to admit now)"}},
		{name: "member with an expired time", by: member, new: obj{tmplAnn: expired},
			rules: []string{RuleBreakGlass}, contains: []string{"spec.template.metadata.annotations refused: expired at " + expired}},
		{name: "member too far ahead", by: member, new: obj{tmplAnn: tooFar, sc: privileged},
			rules: []string{RuleBreakGlass}, contains: []string{"more than 1h0m0s ahead", "at most 1h0m0s from now"}},
		{name: "member with a value that is no time", by: member, new: obj{tmplAnn: "tomorrow"},
			rules: []string{RuleBreakGlass}, contains: []string{`"tomorrow" is not an RFC 3339 time`}},
		{name: "member renews on an unchanged pod spec", by: member,
			old: &obj{tmplAnn: valid, sc: privileged}, new: obj{tmplAnn: later, sc: privileged},
			allowed: true, rules: []string{RulePodSecurity}, until: later},
		{name: "member keeps it on a changed pod spec", by: member,
			old: &obj{tmplAnn: valid, sc: privileged}, new: obj{tmplAnn: valid, sc: privileged, img: 2},
			allowed: true, rules: []string{RulePodSecurity}, until: valid},
		{name: "member keeps an expired one on a changed pod spec: it admits nothing", by: member,
			old: &obj{tmplAnn: expired, sc: privileged}, new: obj{tmplAnn: expired, sc: privileged, img: 2},
			rules: []string{RulePodSecurity}, contains: []string{"ignored: expired at " + expired}},

		// Everyone else.
		{name: "non-member arms a clean Deployment", by: other, new: obj{tmplAnn: valid},
			rules: []string{RuleBreakGlass}, contains: []string{`spec.template.metadata.annotations is set or changed by "mallory", who is not in a break-glass group`}},
		{name: "non-member breaks the glass", by: other, new: obj{tmplAnn: valid, sc: privileged},
			rules: []string{RuleBreakGlass}},
		{name: "non-member adds it to the template only (pod spec unchanged)", by: other,
			old: &obj{sc: privileged}, new: obj{tmplAnn: valid, sc: privileged}, rules: []string{RuleBreakGlass}},
		{name: "non-member renews it (pod spec unchanged)", by: other,
			old: &obj{tmplAnn: valid, sc: privileged}, new: obj{tmplAnn: later, sc: privileged}, rules: []string{RuleBreakGlass}},
		{name: "non-member renews an expired one (pod spec unchanged)", by: other,
			old: &obj{tmplAnn: expired, sc: privileged}, new: obj{tmplAnn: valid, sc: privileged}, rules: []string{RuleBreakGlass}},
		{name: "non-member adds it to the workload's own metadata", by: other,
			old: &obj{sc: privileged}, new: obj{objAnn: valid, sc: privileged},
			rules: []string{RuleBreakGlass}, contains: []string{"annotation gantry.dev/break-glass-until in metadata.annotations is set"}},
		{name: "non-member adds it to a CronJob's job template", by: other, new: obj{kind: "CronJob", tmplAnn: valid},
			rules: []string{RuleBreakGlass}, contains: []string{"in spec.jobTemplate.spec.template.metadata.annotations"}},
		{name: "non-member adds it to a Pod", by: other, new: obj{kind: "Pod", tmplAnn: valid},
			rules: []string{RuleBreakGlass}, contains: []string{"Pod fn/w refused", "in metadata.annotations is set"}},
		{name: "non-member adds it to a running Pod (spec unchanged)", by: other,
			old: &obj{kind: "Pod"}, new: obj{kind: "Pod", tmplAnn: valid}, rules: []string{RuleBreakGlass}},
		{name: "non-member restarts a rollout: kept, pod spec unchanged, not judged", by: other,
			old: &obj{tmplAnn: valid, sc: privileged}, new: obj{tmplAnn: valid, sc: privileged, extra: []string{"kubectl.kubernetes.io/restartedAt=" + at(0)}},
			allowed: true, unchanged: true},
		{name: "non-member removes it", by: other,
			old: &obj{tmplAnn: valid, sc: privileged}, new: obj{sc: privileged}, allowed: true, unchanged: true},
		{name: "non-member keeps a live one on a changed pod spec", by: other,
			old: &obj{tmplAnn: valid, sc: privileged}, new: obj{tmplAnn: valid, sc: privileged, img: 2},
			rules: []string{RuleBreakGlass}, contains: []string{"(until " + valid + ") was admitted for the pod spec as it was"}},
		{name: "non-member keeps a live one on a changed, clean pod spec", by: other,
			old: &obj{tmplAnn: valid, sc: privileged}, new: obj{tmplAnn: valid}, rules: []string{RuleBreakGlass}},
		{name: "non-member keeps an expired one on a changed, clean pod spec", by: other,
			old: &obj{tmplAnn: expired, sc: privileged}, new: obj{tmplAnn: expired}, allowed: true},
		{name: "non-member keeps an expired one on a changed, bad pod spec: denied by the rules", by: other,
			old: &obj{tmplAnn: expired}, new: obj{tmplAnn: expired, sc: privileged},
			rules: []string{RulePodSecurity}, contains: []string{"it admits nothing (expired or not a time)"}},
		{name: "an old object that could not be read: everything counts as set", by: other, oldUnreadable: true,
			new: obj{tmplAnn: valid, sc: privileged}, rules: []string{RuleBreakGlass}},
		{name: "exempt non-member keeps a member's annotation on a changed pod spec", by: deployerSA,
			cfg: func(c *config.Admission) {
				c.Exemptions = []config.AdmissionExemption{{ServiceAccount: "ci/deployer", Reason: "gitops"}}
			},
			old: &obj{tmplAnn: valid, sc: privileged}, new: obj{tmplAnn: valid, sc: privileged, img: 2}, rules: []string{RuleBreakGlass}},
		{name: "exempt non-member without the annotation: its exemption applies", by: deployerSA,
			cfg: func(c *config.Admission) {
				c.Exemptions = []config.AdmissionExemption{{ServiceAccount: "ci/deployer", Reason: "gitops"}}
			},
			old: &obj{tmplAnn: valid, sc: privileged}, new: obj{sc: privileged, img: 2}, allowed: true},
		{name: "namespace exemption does not cover the annotation", by: other,
			cfg: func(c *config.Admission) {
				c.Exemptions = []config.AdmissionExemption{{Namespace: "fn", Reason: "legacy"}}
			},
			new: obj{tmplAnn: valid, sc: privileged}, rules: []string{RuleBreakGlass}},
		{name: "warn mode does not soften the refusal", by: other,
			cfg: func(c *config.Admission) { c.Mode = ModeWarn }, new: obj{tmplAnn: valid}, rules: []string{RuleBreakGlass}},
		{name: "disabled without groups: the annotation means nothing", by: other,
			cfg: func(c *config.Admission) { c.BreakGlass.Groups = nil }, new: obj{tmplAnn: valid}, allowed: true},

		// The controllers copying it from an admitted parent.
		{name: "ReplicaSet controller's Pod inherits a live one", by: rsCtl, new: obj{kind: "Pod", tmplAnn: valid, sc: privileged},
			allowed: true, rules: []string{RulePodSecurity}, until: valid},
		{name: "Deployment controller's ReplicaSet inherits a live one", by: depCtl, new: obj{tmplAnn: valid, sc: privileged},
			allowed: true, rules: []string{RulePodSecurity}, until: valid},
		{name: "a controller's object with an expired one is judged without it", by: rsCtl, new: obj{kind: "Pod", tmplAnn: expired, sc: privileged},
			rules: []string{RulePodSecurity}, contains: []string{"ignored: expired at"}},
		{name: "a controller's object with one too far ahead is judged without it", by: depCtl, new: obj{tmplAnn: tooFar, sc: privileged},
			rules: []string{RulePodSecurity}, contains: []string{"more than 1h0m0s ahead"}},
		{name: "a controller carrying one onto a clean object is never refused", by: depCtl, new: obj{tmplAnn: tooFar}, allowed: true},
		{name: "a controller syncing the owner's annotations (pod spec unchanged)", by: depCtl,
			old: &obj{sc: privileged}, new: obj{objAnn: later, sc: privileged}, allowed: true, unchanged: true},
		{name: "a controller not named in propagators is refused", by: rsCtl,
			cfg: func(c *config.Admission) { c.BreakGlass.Propagators = nil }, new: obj{kind: "Pod", tmplAnn: valid, sc: privileged},
			rules: []string{RuleBreakGlass}, contains: []string{"admission.breakGlass.propagators"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cfg := config.DefaultAdmission()
			cfg.VerifySignatures = false
			cfg.BreakGlass.Groups = []string{"sre"}
			cfg.BreakGlass.MaxDuration = time.Hour
			if c.cfg != nil {
				c.cfg(&cfg)
			}
			e, err := New(cfg, Options{Now: func() time.Time { return now }})
			if err != nil {
				t.Fatal(err)
			}
			kind := c.new.kind
			if kind == "" {
				kind = "Deployment"
			}
			req := Request{Operation: "CREATE", Namespace: "fn", Username: c.by.user, Groups: c.by.groups,
				Workload: decode(t, kind, raw(c.new))}
			if c.old != nil || c.oldUnreadable {
				req.Operation = "UPDATE"
			}
			if c.old != nil {
				req.Old = decode(t, kind, raw(*c.old))
			}
			d := e.Evaluate(context.Background(), req)
			var rules []string
			for _, v := range d.Violations {
				rules = append(rules, v.Rule)
			}
			if d.Allowed != c.allowed || strings.Join(rules, ",") != strings.Join(c.rules, ",") ||
				d.Unchanged != c.unchanged || d.BreakGlass != c.until {
				t.Fatalf("allowed=%v rules=%v unchanged=%v until=%q, want allowed=%v rules=%v unchanged=%v until=%q\n%s\n%s",
					d.Allowed, rules, d.Unchanged, d.BreakGlass, c.allowed, c.rules, c.unchanged, c.until, d.Message(), strings.Join(d.Warnings(), "\n"))
			}
			text := d.Message() + "\n" + strings.Join(d.Warnings(), "\n")
			for _, s := range c.contains {
				if !strings.Contains(text, s) {
					t.Errorf("%q missing from:\n%s", s, text)
				}
			}
		})
	}
}

// FuzzBreakGlassUpdate: whatever the old and new objects, a user outside
// the break-glass groups and propagators never gets an object admitted by
// break-glass, and never gets one through that adds or changes the
// annotation; a member's admission by break-glass is never past
// maxDuration.
func FuzzBreakGlassUpdate(f *testing.F) {
	const bg = `{"gantry.dev/break-glass-until":"2026-11-01T12:30:00Z"}`
	tmpl := func(ann, sc string) string {
		return `{"metadata":{"name":"w"},"spec":{"selector":{"matchLabels":{"a":"b"}},"template":{"metadata":{"annotations":` + ann +
			`},"spec":{"containers":[{"name":"a","image":"r/x@sha256:` + strings.Repeat("a", 64) + `","securityContext":` + sc + `}]}}}}`
	}
	f.Add("Deployment", tmpl(`{}`, `{"privileged":true}`), tmpl(bg, `{"privileged":true}`), uint8(0))
	f.Add("Deployment", tmpl(bg, `{"privileged":true}`), tmpl(bg, `{"runAsUser":0}`), uint8(1))
	f.Add("Pod", podJSON("p", bg, "", ctr("a", "r/x@sha256:"+strings.Repeat("b", 64), `{"privileged":true}`)),
		podJSON("p", `{"gantry.dev/break-glass-until":"2026-11-01T12:59:00Z"}`, "", ctr("a", "r/x@sha256:"+strings.Repeat("b", 64), `{"privileged":true}`)), uint8(2))
	now := time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)
	cfg := config.DefaultAdmission()
	cfg.VerifySignatures = false
	cfg.BreakGlass.Groups = []string{"sre"}
	cfg.BreakGlass.MaxDuration = time.Hour
	cfg.Exemptions = []config.AdmissionExemption{{User: "mallory", Rules: []string{"podSecurity"}, Reason: "fuzz"}}
	e, err := New(cfg, Options{Now: func() time.Time { return now }})
	if err != nil {
		f.Fatal(err)
	}
	users := []struct {
		name   string
		groups []string
	}{{"mallory", []string{"dev"}}, {"bob", []string{"sre"}}, {"system:serviceaccount:kube-system:replicaset-controller", nil}}
	f.Fuzz(func(t *testing.T, kind, oldRaw, newRaw string, who uint8) {
		var gvk schema.GroupVersionKind
		for _, k := range objects.Kinds() {
			if k.Kind == kind {
				gvk = k
			}
		}
		w, err := objects.Decode(gvk, []byte(newRaw))
		if err != nil {
			return
		}
		old, _ := objects.Decode(gvk, []byte(oldRaw))
		u := users[int(who)%len(users)]
		d := e.Evaluate(context.Background(), Request{Operation: "UPDATE", Namespace: "fn", Username: u.name, Groups: u.groups, Workload: w, Old: old})
		if !d.Allowed && len(d.Violations) == 0 {
			t.Fatal("denied without a violation")
		}
		if d.BreakGlass != "" {
			until, err := time.Parse(time.RFC3339, d.BreakGlass)
			if err != nil || !until.After(now) || until.Sub(now) > cfg.BreakGlass.MaxDuration {
				t.Fatalf("admitted by break-glass until %q", d.BreakGlass)
			}
		}
		if u.name != "mallory" {
			return
		}
		if d.BreakGlass != "" {
			t.Fatal("a non-member admitted by break-glass")
		}
		set := func(newAnn, oldAnn map[string]string) bool {
			v, ok := newAnn[cfg.BreakGlass.Annotation]
			ov, had := oldAnn[cfg.BreakGlass.Annotation]
			return ok && (!had || ov != v)
		}
		var oldPod, oldObj map[string]string
		if old != nil {
			oldPod, oldObj = old.PodMeta.Annotations, old.Object.Annotations
		}
		if d.Allowed && (set(w.PodMeta.Annotations, oldPod) || kind != "Pod" && set(w.Object.Annotations, oldObj)) {
			t.Fatal("a non-member added or changed the break-glass annotation")
		}
	})
}
