// Package admission decides whether a Pod, or a workload's pod template, may
// enter a namespace. Three rules, each on by default:
//
//  1. signature: every image (containers, initContainers,
//     ephemeralContainers) is signed by an identity the signer's verify
//     policy trusts, checked on the digest;
//  2. podSecurity: Pod Security Standards, evaluated by
//     k8s.io/pod-security-admission/policy (the evaluator Kubernetes runs),
//     restricted unless a namespace is lowered to baseline;
//  3. nonRoot: no container runs as UID 0, also when the pod sets no
//     runAsUser and the image's own config runs as root.
//
// The request is decoded by package objects, images are inspected by
// package images, signatures are checked through package verification; the
// HTTP server is package webhook. This package is the policy only, shared
// by the webhook and `gantry policy check`.
package admission

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	psapi "k8s.io/pod-security-admission/api"
	"k8s.io/pod-security-admission/policy"

	"github.com/gantry-dev/gantry/admission/images"
	"github.com/gantry-dev/gantry/admission/objects"
	"github.com/gantry-dev/gantry/admission/verification"
	"github.com/gantry-dev/gantry/audit"
	"github.com/gantry-dev/gantry/config"
	"github.com/gantry-dev/gantry/internal/oci"
)

// Rule names, as used in messages, metrics and exemptions.
const (
	RuleSignature   = "signature"
	RulePodSecurity = "podSecurity"
	RuleNonRoot     = "nonRoot"
)

// Modes.
const (
	ModeEnforce = "enforce"
	ModeWarn    = "warn"
	ModeAudit   = "audit"
)

// Violation is one failed rule.
type Violation struct {
	Rule string `json:"rule"`
	// Container is empty for a pod-level finding.
	Container string `json:"container,omitempty"`
	Image     string `json:"image,omitempty"`
	// Message says what is wrong, Fix how to fix it.
	Message string `json:"message"`
	Fix     string `json:"fix,omitempty"`
}

func (v Violation) String() string {
	var b strings.Builder
	b.WriteString(v.Rule)
	b.WriteString(": ")
	if v.Container != "" {
		fmt.Fprintf(&b, "container %q ", v.Container)
	}
	if v.Image != "" {
		fmt.Fprintf(&b, "image %q ", v.Image)
	}
	if v.Container != "" || v.Image != "" {
		b.WriteString("— ")
	}
	b.WriteString(v.Message)
	if v.Fix != "" {
		b.WriteString(" (fix: ")
		b.WriteString(v.Fix)
		b.WriteString(")")
	}
	return b.String()
}

// Decision is the verdict on one object.
type Decision struct {
	Allowed bool   `json:"allowed"`
	Object  string `json:"object"`
	Mode    string `json:"mode"`
	Level   string `json:"level"`
	// Violations lists every failed rule (also when allowed by mode,
	// exemption or break-glass).
	Violations []Violation `json:"violations,omitempty"`
	// Exempt lists the reasons of exemptions that applied.
	Exempt []string `json:"exempt,omitempty"`
	// BreakGlass is set when a valid break-glass annotation allowed it.
	BreakGlass string `json:"breakGlass,omitempty"`
	// Notes are warnings for the user (warn mode, break-glass, ignored
	// annotations); not reasons to deny.
	Notes []string `json:"notes,omitempty"`
	// Unchanged is true for an update that left the pod spec as it was.
	Unchanged bool `json:"unchanged,omitempty"`
}

// Request is what the evaluator needs from an AdmissionRequest.
type Request struct {
	Operation string // CREATE, UPDATE
	Namespace string
	Username  string
	Groups    []string
	// UID is the AdmissionRequest uid, and DryRun its dryRun flag; both go
	// into audit records only.
	UID      string
	DryRun   bool
	Workload *objects.Workload
	// Old is the previous object of an UPDATE, when known.
	Old *objects.Workload
}

// Options are the evaluator's parts. A nil Verifier with signature
// verification on fails every image closed; a nil Images means offline
// (`gantry policy check --offline`): tags cannot be resolved and image
// configs cannot be read.
type Options struct {
	Verifier verification.Verifier
	Images   *images.Inspector
	Registry *oci.Client
	Log      *slog.Logger
	Metrics  *Metrics
	Now      func() time.Time
	// Audit, when set, receives a record of every exemption used and every
	// break-glass annotation set, used, refused or ignored (nil: logged
	// only).
	Audit audit.Sink
	// AuditTimeout bounds the audit writes of one review (default 1s).
	AuditTimeout time.Duration
}

// Evaluator applies the configured policy.
type Evaluator struct {
	cfg       config.Admission
	o         Options
	psa       policy.Evaluator
	psVersion psapi.Version
	ns        map[string]config.AdmissionNamespace
	bgGroups  map[string]bool
	bgProp    map[string]bool
}

// New builds an Evaluator from the admission section.
func New(cfg config.Admission, o Options) (*Evaluator, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	v, err := psapi.ParseVersion(cfg.PodSecurity.Version)
	if err != nil {
		return nil, fmt.Errorf("admission.podSecurity.version: %w", err)
	}
	psa, err := policy.NewEvaluator(policy.DefaultChecks(), nil)
	if err != nil {
		return nil, fmt.Errorf("pod security evaluator: %w", err)
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Metrics == nil {
		o.Metrics = NewMetrics()
	}
	if cfg.VerifySignatures && o.Verifier == nil {
		o.Verifier = verification.Disabled{}
	}
	e := &Evaluator{cfg: cfg, o: o, psa: psa, psVersion: v,
		ns: map[string]config.AdmissionNamespace{}, bgGroups: map[string]bool{}, bgProp: map[string]bool{}}
	for _, n := range cfg.Namespaces {
		e.ns[n.Name] = n
	}
	for _, g := range cfg.BreakGlass.Groups {
		e.bgGroups[g] = true
	}
	for _, u := range cfg.BreakGlass.Propagators {
		e.bgProp[u] = true
	}
	return e, nil
}

// Metrics returns the evaluator's metrics.
func (e *Evaluator) Metrics() *Metrics { return e.o.Metrics }

func (e *Evaluator) modeAndLevel(ns string) (string, string) {
	mode, level := e.cfg.Mode, e.cfg.PodSecurity.Level
	if o, ok := e.ns[ns]; ok {
		if o.Mode != "" {
			mode = o.Mode
		}
		if o.Level != "" {
			level = o.Level
		}
	}
	return mode, level
}

// Evaluate decides on one request. It never returns an error: anything
// that cannot be decided is a violation (fail closed).
func (e *Evaluator) Evaluate(ctx context.Context, req Request) Decision {
	mode, level := e.modeAndLevel(req.Namespace)
	w := req.Workload
	d := Decision{Object: w.String(), Mode: mode, Level: level + ":" + e.psVersion.String()}
	if w.Namespace == "" && req.Namespace != "" {
		d.Object = w.Kind + " " + req.Namespace + "/" + orGenerate(w)
	}

	// Updates that leave the pod spec alone (labels, finalizers, scaling)
	// are not re-judged, as in Pod Security Admission: an old object must
	// stay deletable and scalable. One that adds or renews a break-glass
	// annotation is (breakglass.go): it arms the pods a controller creates
	// next.
	specUnchanged := req.Operation == "UPDATE" && req.Old != nil && req.Old.Spec != nil && w.Spec != nil &&
		equality.Semantic.DeepEqual(req.Old.Spec, w.Spec)
	bg := e.reviewBreakGlass(req, specUnchanged)
	if specUnchanged && (!bg.set || bg.role == bgPropagator) {
		d.Allowed, d.Unchanged = true, true
		return d
	}

	// Audit records are written once, after the decision, before the answer.
	var records []audit.Event
	defer func() { e.record(ctx, records) }()

	if bg.refused != nil {
		// Whatever the mode or exemptions: the annotation exists only to
		// override them.
		d.Violations = []Violation{*bg.refused}
		e.o.Metrics.violation(RuleBreakGlass, mode)
		e.o.Metrics.breakGlassRefused.Add(1)
		e.o.Log.Warn("admission break-glass annotation refused", "object", d.Object, "user", req.Username, "reason", bg.refused.Message)
		records = append(records, breakGlassEvent(req, &d, bg.value, "", bg.refused.Message, d.Violations))
		return d
	}
	if w.Spec == nil {
		d.Allowed = true
		return d
	}

	skip := map[string]bool{}
	var used []usedExemption
	for _, ex := range e.cfg.Exemptions {
		if ex.Image != "" || !e.requestMatches(ex, req) {
			continue
		}
		rules := ex.Rules
		if len(rules) == 0 {
			rules = config.AdmissionRules
		}
		for _, r := range rules {
			skip[r] = true
		}
		used = append(used, usedExemption{ex: ex})
	}

	var (
		mu   sync.Mutex
		vios []Violation
	)
	add := func(v ...Violation) {
		mu.Lock()
		vios = append(vios, v...)
		mu.Unlock()
	}
	if !skip[RulePodSecurity] {
		add(e.podSecurity(w, level)...)
	}
	sigs := e.cfg.VerifySignatures && !skip[RuleSignature]
	if sigs || !skip[RuleNonRoot] {
		bctx, cancel := context.WithTimeout(ctx, e.cfg.Budget)
		v, exempt := e.imageRules(bctx, w, sigs, !skip[RuleNonRoot])
		cancel()
		add(v...)
		used = append(used, exempt...)
	}
	sortViolations(vios)
	d.Violations = vios
	for _, u := range used {
		d.Exempt = append(d.Exempt, u.String())
		e.o.Metrics.exemptions.Add(1)
		e.o.Log.Info("admission exemption applied", "object", d.Object, "user", req.Username, "exemption", u.String())
		records = append(records, exemptionEvent(req, &d, u))
	}

	if len(vios) == 0 {
		d.Allowed = true
		if bg.set && bg.role == bgMember {
			// Armed in advance: the pods a controller creates from it later
			// inherit it, so it is recorded now.
			d.Notes = append(d.Notes, "break-glass: annotation accepted until "+bg.until+" (nothing to admit now)")
			e.o.Log.Warn("admission break-glass annotation set", "object", d.Object, "user", req.Username, "until", bg.until)
			records = append(records, breakGlassEvent(req, &d, bg.value, bg.until, "annotation set; no violation to admit now", nil))
		}
		return d
	}
	for _, v := range vios {
		e.o.Metrics.violation(v.Rule, mode)
	}
	if bg.until != "" {
		d.Allowed, d.BreakGlass = true, bg.until
		d.Notes = append(d.Notes, "break-glass: admitted despite "+plural(len(vios), "violation")+" until "+bg.until)
		e.o.Metrics.breakGlass.Add(1)
		e.o.Log.Warn("admission break-glass used", "object", d.Object, "user", req.Username, "until", bg.until,
			"violations", violationStrings(vios))
		records = append(records, breakGlassEvent(req, &d, bg.value, bg.until, "", vios))
		return d
	} else if bg.note != "" {
		d.Notes = append(d.Notes, bg.note)
		records = append(records, breakGlassEvent(req, &d, bg.value, "", bg.note, vios))
	}
	switch mode {
	case ModeWarn:
		d.Allowed = true
		e.o.Log.Info("admission violations (warn mode)", "object", d.Object, "user", req.Username, "violations", violationStrings(vios))
	case ModeAudit:
		d.Allowed = true
		e.o.Log.Warn("admission violations (audit mode)", "object", d.Object, "user", req.Username, "violations", violationStrings(vios))
	default:
		e.o.Log.Info("admission denied", "object", d.Object, "user", req.Username, "violations", violationStrings(vios))
	}
	return d
}

func orGenerate(w *objects.Workload) string {
	if w.Name != "" {
		return w.Name
	}
	return w.Object.GenerateName + "*"
}

func plural(n int, s string) string {
	if n == 1 {
		return "1 " + s
	}
	return fmt.Sprintf("%d %ss", n, s)
}

func violationStrings(v []Violation) []string {
	out := make([]string, len(v))
	for i := range v {
		out[i] = v[i].String()
	}
	return out
}

func (e *Evaluator) requestMatches(ex config.AdmissionExemption, req Request) bool {
	switch {
	case ex.Namespace != "":
		return ex.Namespace == req.Namespace
	case ex.User != "":
		return ex.User == req.Username
	case ex.Group != "":
		return slices.Contains(req.Groups, ex.Group)
	case ex.ServiceAccount != "":
		ns, n, _ := strings.Cut(ex.ServiceAccount, "/")
		return req.Username == "system:serviceaccount:"+ns+":"+n
	}
	return false
}

// exemptionSelector names what an exemption matches ("namespace fn").
func exemptionSelector(ex config.AdmissionExemption) string {
	switch {
	case ex.Namespace != "":
		return "namespace " + ex.Namespace
	case ex.User != "":
		return "user " + ex.User
	case ex.Group != "":
		return "group " + ex.Group
	case ex.ServiceAccount != "":
		return "serviceAccount " + ex.ServiceAccount
	case ex.Image != "":
		return "image " + ex.Image
	}
	return ""
}

func exemptionString(ex config.AdmissionExemption) string {
	what := exemptionSelector(ex)
	rules := "all rules"
	if len(ex.Rules) > 0 {
		rules = strings.Join(ex.Rules, ",")
	}
	return fmt.Sprintf("%s (%s): %s", what, rules, ex.Reason)
}

// podSecurity runs the PSS checks. Baseline still refuses privileged
// containers and host namespaces; privileged is never a level here.
func (e *Evaluator) podSecurity(w *objects.Workload, level string) []Violation {
	lv := psapi.LevelVersion{Level: psapi.LevelRestricted, Version: e.psVersion}
	if level == "baseline" {
		lv.Level = psapi.LevelBaseline
	}
	res := policy.AggregateCheckResults(e.psa.EvaluatePod(lv, &w.PodMeta, w.Spec))
	var out []Violation
	for i, reason := range res.ForbiddenReasons {
		msg := reason
		if det := res.ForbiddenDetails[i]; det != "" {
			msg += " (" + det + ")"
		}
		out = append(out, Violation{
			Rule:    RulePodSecurity,
			Message: fmt.Sprintf("%q (%s): %s", lv.String(), w.SpecPath, msg),
		})
	}
	return out
}

// container is one container of any of the three kinds.
type container struct {
	name, image string
	sc          *corev1.SecurityContext
}

func containers(spec *corev1.PodSpec) []container {
	var out []container
	for _, c := range spec.InitContainers {
		out = append(out, container{c.Name, c.Image, c.SecurityContext})
	}
	for _, c := range spec.Containers {
		out = append(out, container{c.Name, c.Image, c.SecurityContext})
	}
	for _, c := range spec.EphemeralContainers {
		out = append(out, container{c.Name, c.Image, c.SecurityContext})
	}
	return out
}

// maxParallelImages bounds the registry work one review starts at once;
// past the budget the rest fail fast with "registry timeout".
const maxParallelImages = 8

// imageRules checks signatures and the non-root rule for every container.
// Each distinct image is resolved and checked once, all in parallel, inside
// the caller's budget.
func (e *Evaluator) imageRules(ctx context.Context, w *objects.Workload, sigs, nonRoot bool) ([]Violation, []usedExemption) {
	cs := containers(w.Spec)
	type imageState struct {
		exempt  map[string]bool
		digest  name.Digest
		sig     *Violation
		users   []images.User
		userErr error
	}
	states := map[string]*imageState{}
	var used []usedExemption
	for _, c := range cs {
		if _, ok := states[c.image]; ok {
			continue
		}
		st := &imageState{exempt: map[string]bool{}}
		for _, ex := range e.cfg.Exemptions {
			if ex.Image == "" || !imageMatches(ex.Image, c.image) {
				continue
			}
			rules := ex.Rules
			if len(rules) == 0 {
				rules = config.AdmissionRules
			}
			for _, r := range rules {
				st.exempt[r] = true
			}
			used = append(used, usedExemption{ex: ex, image: c.image})
		}
		states[c.image] = st
	}

	// Which images need the registry: signatures for every non-exempt
	// image, the config user only where a container leaves runAsUser unset.
	needUser := map[string]bool{}
	if nonRoot {
		for _, c := range cs {
			if !states[c.image].exempt[RuleNonRoot] && effectiveRunAsUser(w.Spec, c.sc) == nil {
				needUser[c.image] = true
			}
		}
	}
	var wg sync.WaitGroup
	sem := make(chan struct{}, maxParallelImages)
	for img, st := range states {
		checkSig := sigs && !st.exempt[RuleSignature]
		if !checkSig && !needUser[img] {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			select {
			case sem <- struct{}{}:
				defer func() { <-sem }()
			case <-ctx.Done():
			}
			e.inspectImage(ctx, img, checkSig, needUser[img], &st.digest, &st.sig, &st.users, &st.userErr)
		}()
	}
	wg.Wait()

	var out []Violation
	for _, st := range states {
		if st.sig != nil {
			out = append(out, *st.sig)
		}
	}
	if nonRoot {
		for _, c := range cs {
			st := states[c.image]
			if st.exempt[RuleNonRoot] {
				continue
			}
			if v := e.nonRootViolation(w, c, st.users, st.userErr); v != nil {
				out = append(out, *v)
			}
		}
	}
	return out, used
}

// imageMatches matches an exemption pattern against the reference as
// written and against its repository (without tag or digest).
func imageMatches(pattern, image string) bool {
	if ok, _ := path.Match(pattern, image); ok {
		return true
	}
	if r, err := name.ParseReference(image); err == nil {
		if ok, _ := path.Match(pattern, r.Context().Name()); ok {
			return true
		}
	}
	return false
}

func (e *Evaluator) parse(image string) (name.Reference, error) {
	if e.o.Registry != nil {
		return e.o.Registry.ParseReference(image)
	}
	return name.ParseReference(image)
}

// inspectImage resolves an image and runs the registry-backed checks.
func (e *Evaluator) inspectImage(ctx context.Context, image string, checkSig, needUser bool,
	digest *name.Digest, sig **Violation, users *[]images.User, userErr *error) {
	fail := func(msg, fix string) {
		if checkSig {
			*sig = &Violation{Rule: RuleSignature, Image: image, Message: msg, Fix: fix}
		}
		if needUser {
			*userErr = errors.New(msg)
		}
	}
	ref, err := e.parse(image)
	if err != nil {
		fail(fmt.Sprintf("not a valid image reference: %v", err), "use registry/repository@sha256:<digest>")
		return
	}
	d, pinned := ref.(name.Digest)
	if !pinned {
		if checkSig && e.cfg.RequireDigest {
			*sig = &Violation{Rule: RuleSignature, Image: image,
				Message: "image is not pinned by digest (admission.requireDigest is on)",
				Fix:     "reference the image as " + ref.Context().Name() + "@sha256:<digest> (gantry deploy pins it)"}
			checkSig = false
		}
		if !checkSig && !needUser {
			return
		}
		if e.o.Images == nil {
			if checkSig {
				*sig = &Violation{Rule: RuleSignature, Image: image, Message: "could not verify: tag cannot be resolved offline",
					Fix: "pin the image by digest, or run without --offline"}
			}
			*userErr = errOffline
			return
		}
		d, err = e.o.Images.Resolve(ctx, ref)
		if err != nil {
			fail(couldNotVerify(ctx, err), registryFix)
			return
		}
	}
	*digest = d
	var wg sync.WaitGroup
	if checkSig {
		wg.Add(1)
		go func() {
			defer wg.Done()
			*sig = e.verify(ctx, image, d)
		}()
	}
	if needUser {
		if e.o.Images == nil {
			*userErr = errOffline
		} else {
			u, err := e.o.Images.Users(ctx, d)
			if err != nil {
				*userErr = errors.New(couldNotVerify(ctx, err))
			}
			*users = u
		}
	}
	wg.Wait()
}

var errOffline = errors.New("offline: the image config cannot be read")

const registryFix = "check that the registry is reachable from the webhook and the image exists, then retry"

// couldNotVerify words an undecided registry or verifier outcome; a budget
// or registry deadline is "registry timeout".
func couldNotVerify(ctx context.Context, err error) string {
	if errors.Is(err, context.DeadlineExceeded) || ctx.Err() != nil || isTimeout(err) {
		return "could not verify: registry timeout"
	}
	return "could not verify: registry unreachable or image missing: " + shorten(err.Error(), 300)
}

func isTimeout(err error) bool {
	var t interface{ Timeout() bool }
	return errors.As(err, &t) && t.Timeout()
}

func (e *Evaluator) verify(ctx context.Context, image string, d name.Digest) *Violation {
	r, err := e.o.Verifier.Verify(ctx, d)
	if err != nil {
		if errors.Is(err, verification.ErrDisabled) {
			return &Violation{Rule: RuleSignature, Image: image, Message: "could not verify: " + err.Error(),
				Fix: "configure admission.signerPolicy, or exempt the image with a reason"}
		}
		return &Violation{Rule: RuleSignature, Image: image, Message: couldNotVerify(ctx, err), Fix: registryFix}
	}
	if r.Verified {
		return nil
	}
	// The image is named by the violation and the verifier's message says
	// what was looked for; the fix need not repeat the digest.
	fix := "sign the digest with a key or identity the verify policy trusts (gantry sign)"
	if r.Reason == verification.ReasonUntrusted {
		fix = "re-sign with a trusted key or identity, or add the signer to the verify policy"
	}
	return &Violation{Rule: RuleSignature, Image: image, Message: "not signed by a trusted identity: " + verification.Describe(r), Fix: fix}
}

func effectiveRunAsUser(spec *corev1.PodSpec, sc *corev1.SecurityContext) *int64 {
	if sc != nil && sc.RunAsUser != nil {
		return sc.RunAsUser
	}
	if spec.SecurityContext != nil {
		return spec.SecurityContext.RunAsUser
	}
	return nil
}

func effectiveRunAsNonRoot(spec *corev1.PodSpec, sc *corev1.SecurityContext) bool {
	if sc != nil && sc.RunAsNonRoot != nil {
		return *sc.RunAsNonRoot
	}
	return spec.SecurityContext != nil && spec.SecurityContext.RunAsNonRoot != nil && *spec.SecurityContext.RunAsNonRoot
}

const nonRootFix = "set securityContext.runAsUser to a non-zero UID (and runAsNonRoot: true), or build the image with a numeric non-root USER (e.g. USER 1000)"

func (e *Evaluator) nonRootViolation(w *objects.Workload, c container, users []images.User, userErr error) *Violation {
	v := &Violation{Rule: RuleNonRoot, Container: c.name, Image: c.image, Fix: nonRootFix}
	if uid := effectiveRunAsUser(w.Spec, c.sc); uid != nil {
		if *uid == 0 {
			v.Message = "runs as root: runAsUser is 0"
			return v
		}
		return nil
	}
	if errors.Is(userErr, errOffline) {
		// Offline, the kubelet's own runAsNonRoot check is the best
		// evidence: with it a root image fails to start instead of running.
		if effectiveRunAsNonRoot(w.Spec, c.sc) {
			return nil
		}
		v.Message = "no runAsUser and runAsNonRoot is not true, and the image config cannot be read offline"
		return v
	}
	if userErr != nil {
		v.Message = "cannot tell the user the image runs as: " + userErr.Error()
		v.Fix = "set securityContext.runAsUser to a non-zero UID, or " + registryFix
		return v
	}
	for _, u := range users {
		where := ""
		if u.Platform != "" {
			where = " (" + u.Platform + ")"
		}
		if u.Root {
			v.Message = fmt.Sprintf("runs as root: the pod sets no runAsUser and the image config%s has USER %q", where, u.Raw)
			return v
		}
		if !u.Numeric {
			v.Message = fmt.Sprintf("the image config%s has the non-numeric USER %q and the pod sets no runAsUser: it cannot be proven non-root", where, u.Raw)
			return v
		}
	}
	return nil
}

func shorten(s string, n int) string {
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	return string(r[:n]) + "…"
}

func sortViolations(v []Violation) {
	order := map[string]int{RuleBreakGlass: -1, RuleSignature: 0, RulePodSecurity: 1, RuleNonRoot: 2}
	slices.SortStableFunc(v, func(a, b Violation) int {
		if c := order[a.Rule] - order[b.Rule]; c != 0 {
			return c
		}
		if c := strings.Compare(a.Container, b.Container); c != 0 {
			return c
		}
		return strings.Compare(a.Image, b.Image)
	})
}
