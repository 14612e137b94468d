package admission

import (
	"context"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/gantry-dev/gantry/audit"
	"github.com/gantry-dev/gantry/config"
)

// Bending the policy leaves a trace: every exemption used and every
// break-glass annotation set, used, refused or ignored is an audit record, written
// before the review is answered. The record names who (the Kubernetes user
// and groups), what (object, namespace, operation, review uid), which rules
// were bent and why (the exemption's reason, the break-glass expiry). It
// holds no object content beyond names, images and rule messages.

// defaultAuditTimeout bounds the audit writes of one review: the webhook
// timeout (10 s in the chart) must cover the registry budget (8 s) and this.
const defaultAuditTimeout = time.Second

// usedExemption is one exemption that skipped rules for a request; image
// is the image an image exemption matched.
type usedExemption struct {
	ex    config.AdmissionExemption
	image string
}

func (u usedExemption) String() string { return exemptionString(u.ex) }

// auditBase is the part of a record shared by every record of a request.
func auditBase(req Request, d *Decision, action string) audit.Event {
	actor := req.Username
	if actor == "" {
		actor = "unknown" // never "gantry": the process did not do this
	}
	w := req.Workload
	details := map[string]string{
		"namespace": req.Namespace,
		"kind":      w.Kind,
		"name":      orGenerate(w),
		"operation": req.Operation,
		"mode":      d.Mode,
	}
	if req.UID != "" {
		details["uid"] = req.UID // joins the API server's own audit log
	}
	if req.DryRun {
		details["dryRun"] = "true"
	}
	if len(req.Groups) > 0 {
		details["groups"] = strings.Join(req.Groups, ",")
	}
	return audit.Event{Action: action, Actor: actor, Method: "kubernetes", Target: d.Object, Details: details}
}

func exemptionEvent(req Request, d *Decision, u usedExemption) audit.Event {
	e := auditBase(req, d, audit.ActionAdmissionExemption)
	e.Reason = u.ex.Reason
	rules := u.ex.Rules
	if len(rules) == 0 {
		rules = config.AdmissionRules
	}
	e.Details["rules"] = strings.Join(rules, ",")
	e.Details["exemption"] = exemptionSelector(u.ex)
	if u.image != "" {
		e.Details["image"] = u.image
	}
	return e
}

// breakGlassEvent records a break-glass review: outcome ok when the
// annotation was accepted (until is the expiry; note, when set, replaces
// "admitted despite N violations"), denied when it was refused or ignored
// (note says why).
func breakGlassEvent(req Request, d *Decision, value, until, note string, vios []Violation) audit.Event {
	e := auditBase(req, d, audit.ActionAdmissionBreakGlass)
	var rules []string
	for _, v := range vios {
		if !slices.Contains(rules, v.Rule) {
			rules = append(rules, v.Rule)
		}
	}
	if len(vios) > 0 {
		e.Details["rules"] = strings.Join(rules, ",")
		e.Details["violations"] = strconv.Itoa(len(vios)) + ": " + strings.Join(violationStrings(vios), "; ")
	}
	if until != "" {
		e.Outcome, e.Reason = audit.OutcomeOK, note
		if note == "" {
			e.Reason = "admitted despite " + plural(len(vios), "violation")
		}
		e.Details["expires"] = until
	} else {
		e.Outcome, e.Reason = audit.OutcomeDenied, note
		e.Details["expires"] = shorten(value, 64)
	}
	return e
}

// record writes the events of one review, all within the audit timeout.
// A failed write is logged and counted but does not change the decision:
// the decision is already made, and the API server must get its answer
// before its own timeout (the metric and log make the gap visible).
func (e *Evaluator) record(ctx context.Context, events []audit.Event) {
	if e.o.Audit == nil || len(events) == 0 {
		return
	}
	t := e.o.AuditTimeout
	if t <= 0 {
		t = defaultAuditTimeout
	}
	// The API server hanging up must not cut a record short.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), t)
	defer cancel()
	for _, ev := range events {
		if err := e.o.Audit.Record(ctx, ev); err != nil {
			e.o.Metrics.auditFailures.Add(1)
			e.o.Log.Error("admission audit record failed", "action", ev.Action, "object", ev.Target, "err", err)
		}
	}
}
