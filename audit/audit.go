// Package audit records what changed Gantry's state or bent its policy:
// runs cancelled, tokens created or revoked, admission break-glass and
// exemptions used, policy and configuration reloads. Records are JSON
// lines appended to a file (and published to a JetStream stream that
// refuses deletes when the queue is external). A record names who
// (principal subject and credential id), what, and the outcome; it never
// holds a secret: Details values whose key looks like a secret are
// dropped and every value is bounded.
package audit

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/gantry-dev/gantry/auth"
)

// Actions recorded.
const (
	ActionRunCancel           = "run.cancel"
	ActionTokenCreate         = "token.create"
	ActionTokenRevoke         = "token.revoke"
	ActionAdmissionBreakGlass = "admission.breakglass"
	ActionAdmissionExemption  = "admission.exemption"
	ActionPolicyReload        = "policy.reload"
	ActionConfigReload        = "config.reload"
	ActionSessionLogin        = "session.login"
)

// Outcomes.
const (
	OutcomeOK     = "ok"
	OutcomeDenied = "denied"
	OutcomeError  = "error"
)

// Event is one audit record.
type Event struct {
	Time   time.Time `json:"time"`
	Action string    `json:"action"`
	// Actor is the principal's subject (token name, OIDC subject,
	// Kubernetes user), or "gantry" for the process itself.
	Actor string `json:"actor"`
	// Method is how the actor authenticated (token, tokens-file, oidc,
	// session, kubernetes).
	Method string `json:"method,omitempty"`
	// CredentialID names the credential used (a token id), never the secret.
	CredentialID string `json:"credentialId,omitempty"`
	// Target is what was acted on (run id, token id, namespace/kind/name).
	Target  string            `json:"target,omitempty"`
	Outcome string            `json:"outcome"`
	Reason  string            `json:"reason,omitempty"`
	Details map[string]string `json:"details,omitempty"`
}

// Sink receives audit events.
type Sink interface {
	Record(ctx context.Context, e Event) error
}

// ByPrincipal fills the actor fields of e from p.
func ByPrincipal(e Event, p auth.Principal) Event {
	e.Actor, e.Method, e.CredentialID = p.Subject, p.Method, p.CredentialID
	return e
}

const maxValue = 512

// Sanitize sets defaults, drops secret-looking details and bounds sizes:
// what every sink does to an event before it writes it.
func Sanitize(e Event, now time.Time) Event {
	if e.Time.IsZero() {
		e.Time = now
	}
	e.Time = e.Time.UTC()
	if e.Actor == "" {
		e.Actor = "gantry"
	}
	if e.Outcome == "" {
		e.Outcome = OutcomeOK
	}
	e.Target, e.Reason = bound(e.Target), bound(e.Reason)
	if len(e.Details) > 0 {
		d := make(map[string]string, len(e.Details))
		for k, v := range e.Details {
			if secretKey(k) || len(d) >= 32 {
				continue
			}
			d[bound(k)] = bound(v)
		}
		e.Details = d
	}
	return e
}

func secretKey(k string) bool {
	k = strings.ToLower(k)
	for _, s := range []string{"secret", "password", "passwd", "token", "key", "credential", "authorization", "cookie"} {
		if strings.Contains(k, s) {
			return !strings.HasSuffix(k, "id") // tokenId, keyId name, not reveal
		}
	}
	return false
}

func bound(s string) string {
	if len(s) <= maxValue {
		return s
	}
	return s[:maxValue] + "…"
}

// File appends events as JSON lines to a file opened O_APPEND (one write
// per event, synced), so concurrent writers never interleave records.
type File struct {
	mu  sync.Mutex
	f   *os.File
	now func() time.Time
}

// OpenFile opens (creating, mode 0600) the audit log at path.
func OpenFile(path string) (*File, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("audit log: %w", err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("audit log: %w (audit.file)", err)
	}
	return &File{f: f, now: time.Now}, nil
}

// Record implements Sink.
func (l *File) Record(_ context.Context, e Event) error {
	b, err := Marshal(Sanitize(e, l.now()))
	if err != nil {
		return err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if _, err := l.f.Write(b); err != nil {
		return fmt.Errorf("audit log %s: %w", l.f.Name(), err)
	}
	if err := l.f.Sync(); err != nil {
		return fmt.Errorf("audit log %s: %w", l.f.Name(), err)
	}
	return nil
}

// Close closes the file.
func (l *File) Close() error { return l.f.Close() }

// Marshal encodes one event as a JSON line.
func Marshal(e Event) ([]byte, error) {
	b, err := json.Marshal(e)
	if err != nil {
		return nil, fmt.Errorf("audit: encode: %w", err)
	}
	return append(b, '\n'), nil
}

// Multi records to every sink; the error joins their failures.
type Multi []Sink

// Record implements Sink.
func (m Multi) Record(ctx context.Context, e Event) error {
	var errs []error
	for _, s := range m {
		if s != nil {
			errs = append(errs, s.Record(ctx, e))
		}
	}
	return errors.Join(errs...)
}

// Recorder is what packages call: it records to a sink and logs (never
// returns) failures, so a full disk cannot turn a cancel into a 500 after
// the run was already cancelled. A nil *Recorder records nothing.
type Recorder struct {
	Sink Sink
	Log  *slog.Logger
	// Timeout bounds one Record (a stalled queue); default 5s.
	Timeout time.Duration
}

// Record sends e to the sink.
func (r *Recorder) Record(ctx context.Context, e Event) {
	if r == nil || r.Sink == nil {
		return
	}
	t := r.Timeout
	if t <= 0 {
		t = 5 * time.Second
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), t)
	defer cancel()
	if err := r.Sink.Record(ctx, e); err != nil && r.Log != nil {
		r.Log.Error("audit record failed", "action", e.Action, "target", e.Target, "err", err)
	}
}
