package admission

import (
	"fmt"
	"strings"
	"time"
)

// Break-glass: a member of one of admission.breakGlass.groups may admit a
// refused object until a time, written in the break-glass annotation (at
// most maxDuration ahead). The annotation is itself reviewed on every
// CREATE and UPDATE that carries it, whether or not the object has
// violations, in every mode and whatever exemption applies:
//
//   - adding it, or changing its value, is for members only, and the value
//     must be an RFC 3339 time in the future at most maxDuration from now;
//   - keeping it as it was (same value, same place) on an update that
//     leaves the pod spec alone (scaling, labels, `kubectl rollout
//     restart`) is not judged again, as for every such update;
//   - keeping an unexpired one on a changed pod spec is for members only:
//     a member admitted it for the pod spec as it was, not for a new one;
//   - the workload controllers named in admission.breakGlass.propagators
//     copy it from a parent into the ReplicaSets, Jobs and Pods they create
//     and update; they are never refused for carrying it, and it admits
//     their objects' violations while it is valid (unexpired, at most
//     maxDuration ahead).
//
// So an annotation on a parent was either set by a member, checked as
// above, or copied from a grandparent by a propagator: a child that a
// controller creates inherits it only when it was admitted on the parent.
// The webhook needs no read access to the owners to know this, since no
// write that adds, renews or carries the annotation into a new pod spec
// reaches etcd without passing this review.

// RuleBreakGlass names a refused break-glass annotation (never exempt).
const RuleBreakGlass = "breakGlass"

type bgRole int

const (
	bgOther bgRole = iota
	bgMember
	bgPropagator
)

// bgAnnotation is one break-glass annotation of the object under review.
type bgAnnotation struct {
	where string // field path, for messages
	value string
	kept  bool // an UPDATE whose old object had the same value there
}

// bgReview is the verdict on the break-glass annotations of one request.
type bgReview struct {
	role bgRole
	anns []bgAnnotation
	// set: the request adds or changes an annotation.
	set bool
	// refused, when not nil, refuses the request whatever else it holds.
	refused *Violation
	// value is the annotation that decides (pod template first); until is
	// its expiry when it admits violations, note why not otherwise.
	value, until, note string
}

// reviewBreakGlass judges the break-glass annotations of req. specUnchanged
// says that an UPDATE leaves the pod spec as it was.
func (e *Evaluator) reviewBreakGlass(req Request, specUnchanged bool) bgReview {
	var r bgReview
	if len(e.bgGroups) == 0 {
		return r // disabled: the annotation means nothing
	}
	r.anns = e.bgAnnotations(req)
	if len(r.anns) == 0 {
		return r
	}
	r.role = e.bgRole(req)
	r.value = r.anns[0].value
	for _, a := range r.anns {
		r.set = r.set || !a.kept
	}
	now := e.o.Now()
	name := e.cfg.BreakGlass.Annotation
	switch r.role {
	case bgPropagator:
		r.until, r.note = e.bgGrant(r.value, now)
	case bgMember:
		for _, a := range r.anns {
			if a.kept {
				continue // judged below like any kept value: valid or admitting nothing
			}
			if _, why := e.bgExpiry(a.value, now); why != "" {
				r.refused = &Violation{Rule: RuleBreakGlass,
					Message: fmt.Sprintf("annotation %s in %s refused: %s", name, a.where, why),
					Fix:     fmt.Sprintf("set an RFC 3339 time in the future, at most %s from now, or remove the annotation", e.cfg.BreakGlass.MaxDuration)}
				return r
			}
		}
		r.until, r.note = e.bgGrant(r.value, now)
	default:
		for _, a := range r.anns {
			switch {
			case !a.kept:
				r.refused = &Violation{Rule: RuleBreakGlass,
					Message: fmt.Sprintf("annotation %s in %s is set or changed by %q, who is not in a break-glass group", name, a.where, req.Username),
					Fix:     "remove the annotation: only a member of admission.breakGlass.groups may set or extend it (a workload controller that copies it must be in admission.breakGlass.propagators)"}
				return r
			case !specUnchanged && e.bgUnexpired(a.value, now):
				r.refused = &Violation{Rule: RuleBreakGlass,
					Message: fmt.Sprintf("annotation %s in %s (until %s) was admitted for the pod spec as it was; %q, who is not in a break-glass group, may not keep it on a changed pod spec",
						name, a.where, shorten(a.value, 64), req.Username),
					Fix: "remove the annotation in this change, or have a member of a break-glass group make the change"}
				return r
			}
		}
		r.note = fmt.Sprintf("break-glass annotation %s ignored: it admits nothing (expired or not a time) and user %q is not in a break-glass group", name, req.Username)
	}
	return r
}

// bgAnnotations lists the annotations of the request: the Pod's, or the
// pod template's and then the workload's own (a Deployment controller
// copies the latter into its ReplicaSets).
func (e *Evaluator) bgAnnotations(req Request) []bgAnnotation {
	name := e.cfg.BreakGlass.Annotation
	w, old := req.Workload, req.Old
	type place struct {
		where    string
		new, old map[string]string
	}
	places := []place{{where: "metadata.annotations", new: w.PodMeta.Annotations}}
	if old != nil {
		places[0].old = old.PodMeta.Annotations
	}
	if w.Kind != "Pod" {
		places[0].where = strings.TrimSuffix(w.SpecPath, "spec") + "metadata.annotations"
		p := place{where: "metadata.annotations", new: w.Object.Annotations}
		if old != nil {
			p.old = old.Object.Annotations
		}
		places = append(places, p)
	}
	var out []bgAnnotation
	for _, p := range places {
		v, ok := p.new[name]
		if !ok {
			continue
		}
		ov, had := p.old[name]
		out = append(out, bgAnnotation{where: p.where, value: v,
			kept: req.Operation == "UPDATE" && old != nil && had && ov == v})
	}
	return out
}

func (e *Evaluator) bgRole(req Request) bgRole {
	if e.bgProp[req.Username] {
		return bgPropagator
	}
	for _, g := range req.Groups {
		if e.bgGroups[g] {
			return bgMember
		}
	}
	return bgOther
}

// bgGrant returns the expiry of a valid value, or a note that says why it
// admits nothing.
func (e *Evaluator) bgGrant(val string, now time.Time) (until, note string) {
	until, why := e.bgExpiry(val, now)
	if why != "" {
		note = fmt.Sprintf("break-glass annotation %s ignored: %s", e.cfg.BreakGlass.Annotation, why)
	}
	return until, note
}

// bgExpiry returns the expiry of a valid value, or why it is not valid.
func (e *Evaluator) bgExpiry(val string, now time.Time) (until, why string) {
	t, err := time.Parse(time.RFC3339, val)
	switch {
	case err != nil:
		return "", fmt.Sprintf("%q is not an RFC 3339 time", shorten(val, 64))
	case !t.After(now):
		return "", "expired at " + t.UTC().Format(time.RFC3339)
	case t.Sub(now) > e.cfg.BreakGlass.MaxDuration:
		return "", fmt.Sprintf("expiry %s is more than %s ahead", t.UTC().Format(time.RFC3339), e.cfg.BreakGlass.MaxDuration)
	}
	return t.UTC().Format(time.RFC3339), ""
}

// bgUnexpired: val could still admit something now or later (a value that
// is not a time never can).
func (e *Evaluator) bgUnexpired(val string, now time.Time) bool {
	t, err := time.Parse(time.RFC3339, val)
	return err == nil && t.After(now)
}
