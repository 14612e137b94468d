// Package stream is the audit log's JetStream stream: records published
// to GANTRY_AUDIT, which refuses deletes and purges. Apart from package
// audit so that what records audit events without NATS (the admission
// policy, `gantry policy check`) links no NATS client.
package stream

import (
	"context"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/gantry-dev/gantry/audit"
)

// Name is the JetStream stream that holds audit records.
const Name = "GANTRY_AUDIT"

// SubjectPrefix starts every audit subject: gantry.audit.<action>.
const SubjectPrefix = "gantry.audit."

// Sink publishes events to the GANTRY_AUDIT stream, which refuses message
// deletes and purges (append-only while records are within MaxAge), so a
// compromised API token cannot erase its traces.
type Sink struct {
	js  jetstream.JetStream
	now func() time.Time
}

// New creates or updates the audit stream and returns a sink on it.
func New(ctx context.Context, js jetstream.JetStream, replicas int, maxAge time.Duration) (*Sink, error) {
	if replicas < 1 {
		replicas = 1
	}
	_, err := js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name:        Name,
		Description: "Gantry audit log (append-only)",
		Subjects:    []string{SubjectPrefix + ">"},
		Retention:   jetstream.LimitsPolicy,
		Storage:     jetstream.FileStorage,
		MaxAge:      maxAge,
		Replicas:    replicas,
		DenyDelete:  true,
		DenyPurge:   true,
	})
	if err != nil {
		return nil, fmt.Errorf("audit: stream %s: %w", Name, err)
	}
	return &Sink{js: js, now: time.Now}, nil
}

// Record implements audit.Sink: it returns once the stream stored the event.
func (j *Sink) Record(ctx context.Context, e audit.Event) error {
	e = audit.Sanitize(e, j.now())
	b, err := audit.Marshal(e)
	if err != nil {
		return err
	}
	if _, err := j.js.Publish(ctx, SubjectPrefix+subjectToken(e.Action), b); err != nil {
		return fmt.Errorf("audit: publish to %s: %w", Name, err)
	}
	return nil
}

// subjectToken keeps an action usable as subject tokens.
func subjectToken(action string) string {
	out := []byte(action)
	for i, c := range out {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '.' || c == '-' || c == '_') {
			out[i] = '_'
		}
	}
	if len(out) == 0 || out[0] == '.' || out[len(out)-1] == '.' {
		return "other"
	}
	return string(out)
}

// Bind returns a sink on the audit stream that `gantry queue
// setup` created, without creating or changing it: for NATS users that may
// publish audit records but not manage streams.
func Bind(ctx context.Context, js jetstream.JetStream) (*Sink, error) {
	if _, err := js.Stream(ctx, Name); err != nil {
		return nil, fmt.Errorf("audit: stream %s: %w (run `gantry queue setup` with an admin NATS user first)", Name, err)
	}
	return &Sink{js: js, now: time.Now}, nil
}
