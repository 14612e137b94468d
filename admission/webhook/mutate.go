package webhook

import (
	"context"
	"net/http"
	"strconv"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	admissionv1 "k8s.io/api/admission/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/gantry-dev/gantry/admission"
	"github.com/gantry-dev/gantry/admission/objects"
)

// POST /mutate: the mutating webhook. It reads and checks the review as
// /validate does (same body bound, same decoding, same refusals of wrong
// versions, kinds and subresources), asks the policy which tags to pin
// (admission.Evaluator.Mutate) and answers with an RFC 6902 JSON Patch, or
// a denial. The validating webhook runs after every mutating webhook and
// still requires digests.

type mutateMetrics struct {
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
	pinned   prometheus.Counter
}

func (h *Handler) registerMutate() {
	h.mut = mutateMetrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gantry_admission_mutate_requests_total",
			Help: "Mutating admission reviews answered, by object kind and decision (patch, allow, deny, error).",
		}, []string{"kind", "decision"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "gantry_admission_mutate_review_duration_seconds",
			Help:    "Time to answer one mutating admission review (tag resolution and signature check).",
			Buckets: []float64{.0005, .001, .002, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 8, 10},
		}, []string{"kind"}),
		pinned: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "gantry_admission_images_pinned_total",
			Help: "Image tags replaced by their digest in admitted objects.",
		}),
	}
	h.o.Registry.MustRegister(h.mut.requests, h.mut.duration, h.mut.pinned)
	h.mux.HandleFunc("POST /mutate", func(w http.ResponseWriter, r *http.Request) {
		h.serveReview(w, r, h.MutateReview, h.mut.requests, h.mut.duration)
	})
}

// MutateReview answers one decoded review for the mutating webhook. It
// returns the response, the object kind and the decision label.
func (h *Handler) MutateReview(ctx context.Context, review *admissionv1.AdmissionReview) (*admissionv1.AdmissionResponse, string, string) {
	in, resp, decision := readRequest(review)
	if in == nil {
		return resp, review.Request.Kind.Kind, decision
	}
	m := h.eval.Mutate(ctx, admission.MutateRequest{Request: in.adm, EphemeralOnly: review.Request.SubResource == "ephemeralcontainers"})
	resp.Warnings = m.Warnings()
	if !m.Allowed {
		resp.Result = &metav1.Status{Status: metav1.StatusFailure, Code: http.StatusForbidden,
			Reason: metav1.StatusReasonForbidden, Message: m.Message()}
		resp.AuditAnnotations = map[string]string{"decision": "deny"}
		return resp, in.gvk.Kind, "deny"
	}
	resp.Allowed = true
	if len(m.Pins) == 0 {
		return resp, in.gvk.Kind, "allow"
	}
	patch, err := objects.ImagePatch(m.Changes())
	if err != nil {
		// Not reachable with pointers from ImageFields; refuse rather than
		// admit a tag unpinned.
		resp.Allowed = false
		resp.Result = &metav1.Status{Status: metav1.StatusFailure, Code: http.StatusInternalServerError,
			Reason: metav1.StatusReasonInternalError, Message: "gantry: " + m.Object + ": cannot build the image patch: " + err.Error()}
		return resp, in.gvk.Kind, "error"
	}
	resp.Patch = patch
	pt := admissionv1.PatchTypeJSONPatch
	resp.PatchType = &pt
	resp.AuditAnnotations = pinAnnotations(m.Pins)
	h.mut.pinned.Add(float64(len(m.Pins)))
	return resp, in.gvk.Kind, "patch"
}

// pinAnnotations go into the API server's audit log (next to the patch it
// records itself): which tag became which digest.
func pinAnnotations(pins []admission.Pin) map[string]string {
	var b strings.Builder
	for i, p := range pins {
		if i > 0 {
			b.WriteString("; ")
		}
		b.WriteString(p.Tag + " → " + p.Digest)
	}
	return map[string]string{"decision": "patch", "pinned": strconv.Itoa(len(pins)) + ": " + shorten(b.String(), 1000)}
}
