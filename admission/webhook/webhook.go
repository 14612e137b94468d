// Package webhook is the HTTP side of the admission webhook: it decodes an
// AdmissionReview (admission.k8s.io/v1), hands the object to the policy
// (package admission) and writes the response. Bad input never panics and
// never allows: a malformed review is a 400, a review of the wrong kind or
// version is a denial that says what is wrong.
package webhook

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	admissionv1 "k8s.io/api/admission/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	sigsjson "sigs.k8s.io/json"

	"github.com/gantry-dev/gantry/admission"
	"github.com/gantry-dev/gantry/admission/objects"
)

// Options configure the handler.
type Options struct {
	// MaxBodyBytes bounds a review body.
	MaxBodyBytes int64
	Log          *slog.Logger
	// Registry receives the HTTP metrics (and should hold the evaluator's).
	Registry *prometheus.Registry
	// Ready reports whether the server can serve (e.g. its certificate
	// loads); nil means always.
	Ready func() error
}

// Handler serves /validate, /mutate (mutate.go), /healthz, /readyz and /metrics.
type Handler struct {
	eval     *admission.Evaluator
	o        Options
	mux      *http.ServeMux
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
	mut      mutateMetrics
}

// New builds the handler.
func New(eval *admission.Evaluator, o Options) *Handler {
	if o.MaxBodyBytes <= 0 {
		o.MaxBodyBytes = 6 << 20
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if o.Registry == nil {
		o.Registry = prometheus.NewRegistry()
	}
	h := &Handler{eval: eval, o: o, mux: http.NewServeMux(),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gantry_admission_requests_total",
			Help: "Admission reviews answered, by object kind and decision (allow, deny, warn, audit, exempt, break-glass, error).",
		}, []string{"kind", "decision"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "gantry_admission_review_duration_seconds",
			Help:    "Time to answer one admission review.",
			Buckets: []float64{.0005, .001, .002, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 8, 10},
		}, []string{"kind"}),
	}
	o.Registry.MustRegister(h.requests, h.duration)
	h.mux.HandleFunc("POST /validate", h.validate)
	h.registerMutate()
	h.mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "ok\n") })
	h.mux.HandleFunc("GET /readyz", h.readyz)
	h.mux.Handle("GET /metrics", promhttp.HandlerFor(o.Registry, promhttp.HandlerOpts{}))
	return h
}

func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) { h.mux.ServeHTTP(w, r) }

func (h *Handler) readyz(w http.ResponseWriter, _ *http.Request) {
	if h.o.Ready != nil {
		if err := h.o.Ready(); err != nil {
			http.Error(w, "not ready: "+err.Error(), http.StatusServiceUnavailable)
			return
		}
	}
	_, _ = io.WriteString(w, "ok\n")
}

// reviewEnvelope is decoded first, to tell a wrong kind or version from a
// malformed body before trusting the request's shape.
type reviewEnvelope struct {
	APIVersion string          `json:"apiVersion"`
	Kind       string          `json:"kind"`
	Request    json.RawMessage `json:"request"`
}

func (h *Handler) validate(w http.ResponseWriter, r *http.Request) {
	h.serveReview(w, r, h.Review, h.requests, h.duration)
}

// serveReview reads a bounded review body, answers it with review and
// writes the response, counting it in requests and duration.
func (h *Handler) serveReview(w http.ResponseWriter, r *http.Request,
	review func(context.Context, *admissionv1.AdmissionReview) (*admissionv1.AdmissionResponse, string, string),
	requests *prometheus.CounterVec, duration *prometheus.HistogramVec) {
	start := time.Now()
	if ct := r.Header.Get("Content-Type"); ct != "" {
		if mt, _, err := mime.ParseMediaType(ct); err != nil || mt != "application/json" {
			http.Error(w, "Content-Type must be application/json", http.StatusUnsupportedMediaType)
			return
		}
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, h.o.MaxBodyBytes))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			http.Error(w, fmt.Sprintf("AdmissionReview larger than %d bytes (admission.maxBodyBytes)", h.o.MaxBodyBytes), http.StatusRequestEntityTooLarge)
			return
		}
		http.Error(w, "reading body: "+err.Error(), http.StatusBadRequest)
		return
	}
	rev, status, err := DecodeReview(body)
	if err != nil {
		requests.WithLabelValues("", "error").Inc()
		h.o.Log.Warn("admission review rejected", "path", r.URL.Path, "status", status, "error", err)
		http.Error(w, err.Error(), status)
		return
	}
	resp, kind, decision := review(r.Context(), rev)
	requests.WithLabelValues(kind, decision).Inc()
	duration.WithLabelValues(kind).Observe(time.Since(start).Seconds())
	out := admissionv1.AdmissionReview{
		TypeMeta: metav1.TypeMeta{APIVersion: "admission.k8s.io/v1", Kind: "AdmissionReview"},
		Response: resp,
	}
	w.Header().Set("Content-Type", "application/json")
	if err := json.NewEncoder(w).Encode(out); err != nil {
		h.o.Log.Warn("writing admission response", "error", err)
	}
}

// DecodeReview parses an AdmissionReview body. A body that is not a JSON
// object, or a v1 review without a request, is malformed (400). A review of
// another kind or version still yields a review (with whatever uid could be
// read) so that it can be denied with a clear message.
func DecodeReview(body []byte) (*admissionv1.AdmissionReview, int, error) {
	// One pass on the happy path; the envelope is read on its own only to
	// tell a malformed v1 review from another kind or version.
	var full struct {
		APIVersion string                        `json:"apiVersion"`
		Kind       string                        `json:"kind"`
		Request    *admissionv1.AdmissionRequest `json:"request"`
	}
	if err := sigsjson.UnmarshalCaseSensitivePreserveInts(body, &full); err == nil {
		if full.Request == nil {
			return nil, http.StatusBadRequest, errors.New("malformed AdmissionReview: no request")
		}
		return &admissionv1.AdmissionReview{TypeMeta: metav1.TypeMeta{APIVersion: full.APIVersion, Kind: full.Kind}, Request: full.Request}, http.StatusOK, nil
	}
	var env reviewEnvelope
	if err := sigsjson.UnmarshalCaseSensitivePreserveInts(body, &env); err != nil {
		return nil, http.StatusBadRequest, fmt.Errorf("malformed AdmissionReview: %v", err)
	}
	if len(bytes.TrimSpace(env.Request)) == 0 || bytes.Equal(bytes.TrimSpace(env.Request), []byte("null")) {
		return nil, http.StatusBadRequest, errors.New("malformed AdmissionReview: no request")
	}
	if env.APIVersion == "admission.k8s.io/v1" && env.Kind == "AdmissionReview" {
		var req admissionv1.AdmissionRequest
		err := sigsjson.UnmarshalCaseSensitivePreserveInts(env.Request, &req)
		return nil, http.StatusBadRequest, fmt.Errorf("malformed AdmissionReview request: %v", err)
	}
	// Another kind or version, of another shape: keep the uid if any, so
	// that the denial reaches the caller.
	var u struct {
		UID string `json:"uid"`
	}
	_ = json.Unmarshal(env.Request, &u)
	return &admissionv1.AdmissionReview{TypeMeta: metav1.TypeMeta{APIVersion: env.APIVersion, Kind: env.Kind},
		Request: &admissionv1.AdmissionRequest{UID: typesUID(u.UID)}}, http.StatusOK, nil
}

// Review answers one decoded review. It returns the response, the object
// kind and the decision label for metrics.
func (h *Handler) Review(ctx context.Context, review *admissionv1.AdmissionReview) (*admissionv1.AdmissionResponse, string, string) {
	in, resp, decision := readRequest(review)
	if in == nil {
		return resp, review.Request.Kind.Kind, decision
	}
	d := h.eval.Evaluate(ctx, in.adm)
	resp.Allowed = d.Allowed
	resp.Warnings = d.Warnings()
	resp.AuditAnnotations = auditAnnotations(d)
	label := decisionLabel(d)
	if !d.Allowed {
		resp.Result = &metav1.Status{Status: metav1.StatusFailure, Code: http.StatusForbidden,
			Reason: metav1.StatusReasonForbidden, Message: d.Message()}
	}
	return resp, in.gvk.Kind, label
}

// request is a review request both webhooks judge, decoded.
type request struct {
	gvk schema.GroupVersionKind
	adm admission.Request
}

// readRequest checks and decodes a review's request. It returns the
// decoded request and the response to complete, or no request and the
// finished response (a denial, or an allowed DELETE or CONNECT) with its
// decision label.
func readRequest(review *admissionv1.AdmissionReview) (*request, *admissionv1.AdmissionResponse, string) {
	req := review.Request
	resp := &admissionv1.AdmissionResponse{UID: req.UID}
	deny := func(code int32, reason metav1.StatusReason, msg string) (*request, *admissionv1.AdmissionResponse, string) {
		resp.Allowed = false
		resp.Result = &metav1.Status{Status: metav1.StatusFailure, Code: code, Reason: reason, Message: msg}
		return nil, resp, "deny"
	}
	if review.APIVersion != "admission.k8s.io/v1" || review.Kind != "AdmissionReview" {
		return deny(http.StatusBadRequest, metav1.StatusReasonBadRequest, fmt.Sprintf(
			"gantry: unsupported review %s %q; the webhook speaks admission.k8s.io/v1 AdmissionReview only (set admissionReviewVersions: [v1])",
			review.Kind, review.APIVersion))
	}
	if req.UID == "" {
		return deny(http.StatusBadRequest, metav1.StatusReasonBadRequest, "gantry: AdmissionReview request has no uid")
	}
	switch req.Operation {
	case admissionv1.Create, admissionv1.Update:
	default:
		// DELETE and CONNECT cannot bring in an image or change a pod spec.
		resp.Allowed = true
		return nil, resp, "allow"
	}
	gvk := schema.GroupVersionKind{Group: req.Kind.Group, Version: req.Kind.Version, Kind: req.Kind.Kind}
	if req.SubResource != "" && !(req.SubResource == "ephemeralcontainers" && gvk.Kind == "Pod") {
		return deny(http.StatusBadRequest, metav1.StatusReasonBadRequest, fmt.Sprintf(
			"gantry: subresource %q of %s is not handled; register the webhook for pods/ephemeralcontainers only", req.SubResource, gvk.Kind))
	}
	obj, err := objects.Decode(gvk, req.Object.Raw)
	if err != nil {
		return deny(http.StatusBadRequest, metav1.StatusReasonBadRequest, "gantry: "+shorten(err.Error(), 1000))
	}
	var old *objects.Workload
	if req.Operation == admissionv1.Update && len(req.OldObject.Raw) > 0 {
		old, _ = objects.Decode(gvk, req.OldObject.Raw) // unreadable old object: judge the new one fully
	}
	if obj.Namespace == "" {
		obj.Namespace = req.Namespace
	}
	if obj.Name == "" {
		obj.Name = req.Name
	}
	return &request{gvk: gvk, adm: admission.Request{
		Operation: string(req.Operation), Namespace: req.Namespace,
		Username: req.UserInfo.Username, Groups: req.UserInfo.Groups,
		UID: string(req.UID), DryRun: req.DryRun != nil && *req.DryRun,
		Workload: obj, Old: old,
	}}, resp, ""
}

func decisionLabel(d admission.Decision) string {
	switch {
	case !d.Allowed:
		return "deny"
	case d.BreakGlass != "":
		return "break-glass"
	case len(d.Violations) > 0:
		return d.Mode // warn or audit
	case len(d.Exempt) > 0:
		return "exempt"
	}
	return "allow"
}

// auditAnnotations go into the API server's audit log under the webhook's
// name; keys are plain words (the API server adds the prefix).
func auditAnnotations(d admission.Decision) map[string]string {
	m := map[string]string{"decision": decisionLabel(d)}
	if len(d.Violations) > 0 {
		var rules []string
		for _, v := range d.Violations {
			rules = append(rules, v.Rule)
		}
		m["violations"] = strconv.Itoa(len(d.Violations)) + ": " + shorten(strings.Join(rules, ","), 200)
	}
	if d.BreakGlass != "" {
		m["break-glass-until"] = d.BreakGlass
	}
	if len(d.Exempt) > 0 {
		m["exempt"] = shorten(strings.Join(d.Exempt, "; "), 500)
	}
	return m
}

func shorten(s string, n int) string {
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	return string(r[:n]) + "…"
}

func typesUID(s string) types.UID { return types.UID(s) }
