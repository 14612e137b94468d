package webhooks

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"mime"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/gantry-dev/gantry/pipelines"
)

// MaxBodyBytes is GitHub's own cap on a delivery (25 MiB): anything larger
// cannot come from GitHub and is refused before it is read.
const MaxBodyBytes = 25 << 20

// Enqueuer durably queues a run (pipelines.Queue).
type Enqueuer interface {
	Enqueue(ctx context.Context, req pipelines.Request) (pipelines.Enqueued, error)
}

// Options configure the receiver.
type Options struct {
	Secrets Secrets
	// Repos lists the repositories (and their refs) whose pushes start runs.
	Repos []Repo
	Queue Enqueuer
	// EnqueueTimeout bounds queueing a run (GitHub gives up after 10 s).
	EnqueueTimeout time.Duration
	// RunURL turns a run id into the URL put in answers ("" leaves it out).
	RunURL func(id string) string
	Logger *slog.Logger
	// Registerer receives the receiver's metrics; nil: none.
	Registerer prometheus.Registerer
	// RepoLimit, if set, rate-limits verified pushes per repository: a
	// refusal is answered 429 with Retry-After (GitHub shows it; the
	// delivery can be redelivered).
	RepoLimit func(repo string) (ok bool, retryAfter time.Duration)
	// Backlog, if set with MaxQueuedPerRepo > 0, counts a repository's
	// queued runs; a push beyond the bound is refused with 503 and
	// counted (outcome queue_full), never silently dropped.
	Backlog          func(ctx context.Context, repo string) (int, error)
	MaxQueuedPerRepo int
}

// Handler serves POST /webhooks/github.
type Handler struct {
	opts       Options
	repos      map[string]Repo
	log        *slog.Logger
	deliveries *prometheus.CounterVec
}

// New returns the receiver. It refuses options that would accept nothing
// or anything: no secret, or an invalid repo rule.
func New(opts Options) (*Handler, error) {
	if len(opts.Secrets.keys) == 0 {
		return nil, errors.New("webhooks: no secret configured")
	}
	if opts.Queue == nil {
		return nil, errors.New("webhooks: no queue")
	}
	if opts.EnqueueTimeout <= 0 {
		opts.EnqueueTimeout = 5 * time.Second
	}
	h := &Handler{opts: opts, repos: map[string]Repo{}, log: opts.Logger}
	if h.log == nil {
		h.log = slog.New(slog.DiscardHandler)
	}
	for _, r := range opts.Repos {
		if err := r.Validate(); err != nil {
			return nil, fmt.Errorf("webhooks: %w", err)
		}
		key := strings.ToLower(r.Name)
		if _, dup := h.repos[key]; dup {
			return nil, fmt.Errorf("webhooks: repo %s listed twice", r.Name)
		}
		h.repos[key] = r
	}
	h.deliveries = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "gantry_webhook_deliveries_total",
		Help: "GitHub webhook deliveries, by outcome (queued, duplicate, ignored, ping, unauthorized, too_large, bad_request, method_not_allowed, unsupported_media_type, rate_limited, queue_full, error).",
	}, []string{"outcome"})
	if opts.Registerer != nil {
		if err := opts.Registerer.Register(h.deliveries); err != nil {
			return nil, fmt.Errorf("webhooks: metrics: %w", err)
		}
	}
	return h, nil
}

// Answer is the JSON body of every response.
type Answer struct {
	// Status: queued, duplicate, ignored, pong, or error.
	Status string `json:"status"`
	RunID  string `json:"runId,omitempty"`
	// Run is the API URL of the run.
	Run string `json:"run,omitempty"`
	// State of the run, for duplicates.
	State pipelines.State `json:"state,omitempty"`
	// Reason says why a delivery was ignored or refused.
	Reason string `json:"reason,omitempty"`
}

// ServeHTTP implements http.Handler.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	delivery := r.Header.Get("X-GitHub-Delivery")
	event := r.Header.Get("X-GitHub-Event")
	log := h.log.With("delivery", logSafe(delivery), "event", logSafe(event))
	refuse := func(code int, outcome, reason string) {
		h.deliveries.WithLabelValues(outcome).Inc()
		log.Info("webhook delivery refused", "status", code, "reason", reason)
		writeAnswer(w, code, Answer{Status: "error", Reason: reason})
	}
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		refuse(http.StatusMethodNotAllowed, "method_not_allowed", "use POST")
		return
	}
	if r.ContentLength > MaxBodyBytes {
		refuse(http.StatusRequestEntityTooLarge, "too_large", fmt.Sprintf("body larger than %d bytes", MaxBodyBytes))
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxBodyBytes))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			refuse(http.StatusRequestEntityTooLarge, "too_large", fmt.Sprintf("body larger than %d bytes", MaxBodyBytes))
			return
		}
		refuse(http.StatusBadRequest, "bad_request", "body could not be read completely")
		return
	}
	// Nothing about the request is trusted, or even parsed, before this.
	if err := h.opts.Secrets.Verify(body, r.Header.Get("X-Hub-Signature-256"), r.Header.Get("X-Hub-Signature")); err != nil {
		refuse(http.StatusUnauthorized, "unauthorized", err.Error())
		return
	}
	if !validDeliveryID(delivery) {
		refuse(http.StatusBadRequest, "bad_request", "missing or malformed X-GitHub-Delivery header")
		return
	}
	payload, err := jsonPayload(r.Header.Get("Content-Type"), body)
	if err != nil {
		refuse(http.StatusUnsupportedMediaType, "unsupported_media_type", err.Error())
		return
	}
	switch event {
	case "ping":
		if !json.Valid(payload) {
			refuse(http.StatusBadRequest, "bad_request", "payload is not valid JSON")
			return
		}
		h.deliveries.WithLabelValues("ping").Inc()
		log.Info("webhook ping")
		writeAnswer(w, http.StatusOK, Answer{Status: "pong"})
		return
	case "push":
	default:
		h.ignore(w, log, fmt.Sprintf("event %q is not handled (only push and ping)", logSafe(event)))
		return
	}
	push, err := parsePush(payload)
	if err != nil {
		refuse(http.StatusBadRequest, "bad_request", err.Error())
		return
	}
	req, reason := h.decide(push)
	if reason != "" {
		h.ignore(w, log.With("repo", push.Repository.FullName, "ref", push.Ref), reason)
		return
	}
	req.DeliveryID = delivery
	if h.opts.RepoLimit != nil {
		if ok, retry := h.opts.RepoLimit(strings.ToLower(req.Repo)); !ok {
			w.Header().Set("Retry-After", strconv.Itoa(max(1, int(math.Ceil(retry.Seconds())))))
			refuse(http.StatusTooManyRequests, "rate_limited", "too many pushes for "+req.Repo+"; redeliver after Retry-After seconds")
			return
		}
	}
	ctx, cancel := context.WithTimeout(r.Context(), h.opts.EnqueueTimeout)
	defer cancel()
	if h.opts.Backlog != nil && h.opts.MaxQueuedPerRepo > 0 {
		n, err := h.opts.Backlog(ctx, req.Repo)
		if err != nil || n >= h.opts.MaxQueuedPerRepo {
			reason := fmt.Sprintf("%s already has %d queued runs (webhooks.maxQueuedPerRepo); redeliver later", req.Repo, n)
			if err != nil { // fail closed: an unknown backlog is not an empty one
				log.Error("webhook delivery refused: backlog unknown", "repo", req.Repo, "err", err)
				reason = "the run backlog could not be read; redeliver later"
			}
			w.Header().Set("Retry-After", "60")
			refuse(http.StatusServiceUnavailable, "queue_full", reason)
			return
		}
	}
	res, err := h.opts.Queue.Enqueue(ctx, req)
	if err != nil {
		h.deliveries.WithLabelValues("error").Inc()
		log.Error("webhook delivery not queued", "repo", req.Repo, "ref", req.Ref, "err", err)
		// 503: GitHub shows the failure and the delivery can be redelivered.
		writeAnswer(w, http.StatusServiceUnavailable, Answer{Status: "error", Reason: "the run could not be queued; redeliver later"})
		return
	}
	a := Answer{RunID: res.RunID}
	if h.opts.RunURL != nil {
		a.Run = h.opts.RunURL(res.RunID)
	}
	if res.Duplicate {
		h.deliveries.WithLabelValues("duplicate").Inc()
		log.Info("webhook redelivery: run already exists", "run", res.RunID, "state", res.State)
		a.Status, a.State = "duplicate", res.State
		a.Reason = "this delivery id was seen before; no new run was started"
		if res.SamePush {
			a.Reason = "this push (repository, ref, before, after) was queued before under another delivery id; no new run was started"
		}
		writeAnswer(w, http.StatusOK, a)
		return
	}
	h.deliveries.WithLabelValues("queued").Inc()
	log.Info("run queued", "run", res.RunID, "repo", req.Repo, "ref", req.Ref, "commit", req.Commit)
	a.Status, a.State = "queued", res.State
	writeAnswer(w, http.StatusAccepted, a)
}

func (h *Handler) ignore(w http.ResponseWriter, log *slog.Logger, reason string) {
	h.deliveries.WithLabelValues("ignored").Inc()
	log.Info("webhook delivery ignored", "reason", reason)
	writeAnswer(w, http.StatusOK, Answer{Status: "ignored", Reason: reason})
}

// decide turns a verified push into a run request, or says why not.
func (h *Handler) decide(p *pushEvent) (pipelines.Request, string) {
	repo, ok := h.repos[strings.ToLower(p.Repository.FullName)]
	if !ok {
		return pipelines.Request{}, fmt.Sprintf("repository %s is not configured (webhooks.repos)", p.Repository.FullName)
	}
	if p.Deleted || isZeroSHA(p.After) {
		return pipelines.Request{}, fmt.Sprintf("%s was deleted: nothing to build", p.Ref)
	}
	if why := repo.refReason(p.Ref); why != "" {
		return pipelines.Request{}, why
	}
	title := ""
	if p.HeadCommit != nil {
		if marker, skip := hasSkipMarker(p.HeadCommit.Message); skip {
			return pipelines.Request{}, fmt.Sprintf("head commit message says %s", marker)
		}
		title, _, _ = strings.Cut(p.HeadCommit.Message, "\n")
		if len(title) > 200 {
			title = title[:200]
		}
	}
	pusher := p.Sender.Login
	if pusher == "" {
		pusher = p.Pusher.Name
	}
	return pipelines.Request{
		Repo: p.Repository.FullName, CloneURL: p.Repository.CloneURL,
		Ref: p.Ref, Commit: p.After, Before: p.Before, Pusher: pusher, Title: title,
	}, ""
}

// jsonPayload returns the JSON of a delivery: the body for
// application/json, the payload form field for
// application/x-www-form-urlencoded (GitHub's two content types).
func jsonPayload(contentType string, body []byte) ([]byte, error) {
	mt, _, err := mime.ParseMediaType(contentType)
	if err != nil && contentType != "" {
		return nil, errors.New("malformed Content-Type")
	}
	switch mt {
	case "application/json", "":
		return body, nil
	case "application/x-www-form-urlencoded":
		form, err := url.ParseQuery(string(body))
		if err != nil {
			return nil, errors.New("malformed form body")
		}
		return []byte(form.Get("payload")), nil
	}
	return nil, fmt.Errorf("content type %q is not supported: set the webhook's content type to application/json", mt)
}

func writeAnswer(w http.ResponseWriter, code int, a Answer) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(a)
}

// validDeliveryID accepts GitHub's delivery GUIDs and similar tokens:
// 1-100 characters of letters, digits and dashes.
func validDeliveryID(s string) bool {
	if s == "" || len(s) > 100 {
		return false
	}
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-') {
			return false
		}
	}
	return true
}

// logSafe bounds untrusted header text before it reaches a log line.
func logSafe(s string) string {
	if len(s) > 100 {
		s = s[:100] + "…"
	}
	return strings.ToValidUTF8(s, "?")
}
