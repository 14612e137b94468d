package admission

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"

	"github.com/google/go-containerregistry/pkg/name"
	"k8s.io/apimachinery/pkg/api/equality"

	"github.com/gantry-dev/gantry/admission/objects"
)

// Tags resolved, not refused: the mutating webhook (POST /mutate) runs
// before the validating one and replaces each image tag by the digest the
// tag points to now, after checking that digest's signature with the same
// verifier, registry client and budget as the validating path. The pod
// then runs exactly the digest that was verified, and the validating
// webhook, which still requires digests, verifies it again (from its
// cache): nothing unverified slips between the two, and an object that
// skipped the mutation (webhook not registered, another mutating webhook
// adding a tag after it) is refused there as before.
//
// The mutation refuses only what the validating webhook would refuse for
// certain: in an enforce namespace, a tag whose digest is not signed by a
// trusted identity (naming the tag and the digest), or whose digest cannot
// be found (registry unreachable, timeout, unknown tag: fail closed). In
// warn and audit namespaces, and on objects carrying a break-glass
// annotation that would admit them, it pins what it could resolve and
// leaves the verdict to the validating webhook, which judges mode and
// annotation as always. Images exempt from the signature rule, images
// already pinned by digest, references that do not parse (the validating
// webhook explains those) and updates that leave the pod spec as it was
// are left alone.

// Pin is one image tag the mutation replaces by a digest.
type Pin struct {
	Container string `json:"container"`
	// Pointer is the JSON Pointer of the image field.
	Pointer string `json:"pointer"`
	// Tag is the image as written, Image as patched
	// (registry/repository:tag@sha256:…), Digest the digest alone.
	Tag    string `json:"tag"`
	Image  string `json:"image"`
	Digest string `json:"digest"`
	// Verified is false when the verdict was left to the validating
	// webhook (warn or audit mode, break-glass).
	Verified bool `json:"verified"`
}

// Mutation is the verdict of the mutating webhook on one object: a
// Decision (Allowed, Violations and Message as for validation) and the
// tags to replace.
type Mutation struct {
	Decision
	Pins []Pin `json:"pins,omitempty"`
}

// Changes are the pins as image changes for objects.ImagePatch.
func (m Mutation) Changes() []objects.ImageChange {
	out := make([]objects.ImageChange, 0, len(m.Pins))
	for _, p := range m.Pins {
		out = append(out, objects.ImageChange{Pointer: p.Pointer, From: p.Tag, To: p.Image})
	}
	return out
}

// MutateRequest is a Request for the mutating webhook.
type MutateRequest struct {
	Request
	// EphemeralOnly limits the mutation to ephemeral containers: the
	// pods/ephemeralcontainers subresource writes nothing else.
	EphemeralOnly bool
}

// Mutate decides which tags of the workload to replace by their verified
// digests. Like Evaluate it never returns an error: what cannot be decided
// in an enforce namespace refuses the request.
func (e *Evaluator) Mutate(ctx context.Context, req MutateRequest) Mutation {
	mode, level := e.modeAndLevel(req.Namespace)
	w := req.Workload
	m := Mutation{Decision: Decision{Allowed: true, Object: w.String(), Mode: mode, Level: level + ":" + e.psVersion.String()}}
	if w.Namespace == "" && req.Namespace != "" {
		m.Object = w.Kind + " " + req.Namespace + "/" + orGenerate(w)
	}
	if w.Spec == nil || !e.cfg.VerifySignatures {
		return m
	}
	if req.Operation == "UPDATE" && req.Old != nil && req.Old.Spec != nil && equality.Semantic.DeepEqual(req.Old.Spec, w.Spec) {
		// Pinning an old object's tag on a label change would roll out its
		// pods; the validating webhook does not judge such updates either.
		m.Unchanged = true
		return m
	}
	for _, ex := range e.cfg.Exemptions {
		if ex.Image == "" && e.requestMatches(ex, req.Request) && (len(ex.Rules) == 0 || slices.Contains(ex.Rules, RuleSignature)) {
			return m // the validating webhook records the exemption
		}
	}
	// Refuse only where the validating webhook would: enforce mode, and no
	// break-glass annotation that would admit the object.
	enforce := mode == ModeEnforce && e.reviewBreakGlass(req.Request, false).until == ""

	type target struct {
		field objects.ImageField
		ref   name.Reference
	}
	var targets []target
	tags := map[string]name.Reference{}
	for _, f := range w.ImageFields() {
		if f.Image == "" || (req.EphemeralOnly && f.List != "ephemeralContainers") {
			continue
		}
		ref, err := e.parse(f.Image)
		if err != nil {
			continue // the validating webhook refuses it with the reason
		}
		if _, pinned := ref.(name.Digest); pinned || e.signatureExempt(f.Image) {
			continue
		}
		targets = append(targets, target{f, ref})
		tags[f.Image] = ref
	}
	if len(targets) == 0 {
		return m
	}
	if e.o.Images == nil {
		if enforce {
			for img := range tags {
				m.Violations = append(m.Violations, Violation{Rule: RuleSignature, Image: img,
					Message: "could not resolve the tag: offline", Fix: "pin the image by digest"})
			}
			return e.refuseMutation(m)
		}
		return m
	}

	type result struct {
		digest name.Digest
		vio    *Violation
		err    error
	}
	results := map[string]*result{}
	bctx, cancel := context.WithTimeout(ctx, e.cfg.Budget)
	defer cancel()
	var wg sync.WaitGroup
	sem := make(chan struct{}, maxParallelImages)
	for img, ref := range tags {
		r := &result{}
		results[img] = r
		wg.Add(1)
		go func() {
			defer wg.Done()
			select {
			case sem <- struct{}{}:
				defer func() { <-sem }()
			case <-bctx.Done():
			}
			d, err := e.o.Images.Resolve(bctx, ref)
			if err != nil {
				r.err = err
				return
			}
			r.digest = d
			if enforce {
				r.vio = e.verify(bctx, img, d)
			}
		}()
	}
	wg.Wait()

	for img, r := range results {
		switch {
		case r.err != nil && enforce:
			m.Violations = append(m.Violations, Violation{Rule: RuleSignature, Image: img,
				Message: "could not resolve the tag to a digest: " + strings.TrimPrefix(couldNotVerify(bctx, r.err), "could not verify: "),
				Fix:     registryFix + ", or pin the image by digest"})
		case r.err != nil:
			m.Notes = append(m.Notes, fmt.Sprintf("image %q: tag not pinned: %s", img, couldNotVerify(bctx, r.err)))
		case r.vio != nil:
			v := *r.vio
			if rest, ok := strings.CutPrefix(v.Message, "not signed"); ok {
				v.Message = "the tag resolves to " + r.digest.String() + ", which is not signed" + rest
			} else {
				v.Message = "the tag resolves to " + r.digest.String() + ": " + v.Message
			}
			m.Violations = append(m.Violations, v)
		}
	}
	if len(m.Violations) > 0 {
		return e.refuseMutation(m)
	}
	for _, t := range targets {
		r := results[t.field.Image]
		if r.err != nil {
			continue
		}
		m.Pins = append(m.Pins, Pin{Container: t.field.Container, Pointer: t.field.Pointer, Tag: t.field.Image,
			Image: pinnedImage(t.ref, r.digest), Digest: r.digest.DigestStr(), Verified: enforce})
	}
	if len(m.Pins) == 0 {
		return m
	}
	e.o.Log.Info("admission tags pinned", "object", m.Object, "user", req.Username, "pins", pinStrings(m.Pins), "verified", enforce)
	return m
}

// pinnedImage is the patched reference: the tag as written, then the
// digest (registry/repository:tag@sha256:…). Container runtimes pull by the
// digest and ignore the tag when both are given, the validating webhook
// parses it as a digest reference, and a reader of the stored object still
// sees which tag was asked for (kubectl get shows what the user typed).
func pinnedImage(ref name.Reference, d name.Digest) string {
	return ref.String() + "@" + d.DigestStr()
}

func (e *Evaluator) refuseMutation(m Mutation) Mutation {
	m.Allowed = false
	sortViolations(m.Violations)
	for _, v := range m.Violations {
		e.o.Metrics.violation(v.Rule, m.Mode)
	}
	e.o.Log.Info("admission denied (tag resolution)", "object", m.Object, "violations", violationStrings(m.Violations))
	return m
}

// signatureExempt: an image exemption covers the signature rule.
func (e *Evaluator) signatureExempt(image string) bool {
	for _, ex := range e.cfg.Exemptions {
		if ex.Image != "" && imageMatches(ex.Image, image) && (len(ex.Rules) == 0 || slices.Contains(ex.Rules, RuleSignature)) {
			return true
		}
	}
	return false
}

func pinStrings(p []Pin) []string {
	out := make([]string, len(p))
	for i := range p {
		out[i] = p[i].Tag + " → " + p[i].Digest
	}
	return out
}
