package notify

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"time"
)

// CloudEvents over HTTP, structured content mode with a JSON event
// (CloudEvents 1.0 HTTP binding, section 3.2).
const (
	CloudEventsContentType = "application/cloudevents+json"
	// SignatureHeader carries "sha256=" + the hex HMAC-SHA256 of the raw
	// request body under notify.cloudEvents.secretFile's key. The body
	// holds the event's id and time: receivers reject repeated ids and
	// old times to stop replays.
	SignatureHeader = "X-Gantry-Signature"
	// EventTypePrefix is followed by the run's verdict:
	// dev.gantry.run.failure, dev.gantry.run.success, …
	EventTypePrefix = "dev.gantry.run."
)

// Event is the CloudEvents envelope Gantry sends.
type Event struct {
	SpecVersion     string    `json:"specversion"`
	ID              string    `json:"id"`
	Source          string    `json:"source"`
	Type            string    `json:"type"`
	Subject         string    `json:"subject,omitempty"`
	Time            time.Time `json:"time"`
	DataContentType string    `json:"datacontenttype"`
	Data            EventData `json:"data"`
}

// EventData is the event's payload: the run with its worst findings.
type EventData struct {
	Run
	TopFindings []namedFinding `json:"topFindings"`
}

func (n *Notifier) cloudEvent(run Run) Event {
	// One event per run and verdict: a redelivered notification keeps its
	// id, so receivers can drop the duplicate.
	id := run.ID + "/" + string(run.Verdict)
	if run.ID == "" {
		id = rand.Text()
	}
	data := EventData{Run: run, TopFindings: topFindings(run.Functions, n.cfg.TopFindings)}
	// Findings beyond the top ones stay on the run record; bound the event.
	data.Functions = make([]Function, len(run.Functions))
	for i, f := range run.Functions {
		f.Findings = nil
		data.Functions[i] = f
	}
	return Event{
		SpecVersion:     "1.0",
		ID:              id,
		Source:          n.cfg.CloudEvents.Source,
		Type:            EventTypePrefix + string(run.Verdict),
		Subject:         run.Repo + "@" + run.Commit,
		Time:            n.now().UTC(),
		DataContentType: "application/json",
		Data:            data,
	}
}

func (n *Notifier) postCloudEvent(ctx context.Context, run Run) error {
	body, err := json.Marshal(n.cloudEvent(run))
	if err != nil {
		return permanent(err)
	}
	h := http.Header{}
	h.Set(SignatureHeader, Sign(n.ceKey, body))
	return n.postJSON(ctx, "CloudEvents sink", n.ceURL, CloudEventsContentType, h, body)
}

// Sign returns the SignatureHeader value for body.
func Sign(key, body []byte) string {
	m := hmac.New(sha256.New, key)
	m.Write(body)
	return "sha256=" + hex.EncodeToString(m.Sum(nil))
}

// ErrBadSignature is returned by VerifySignature for any mismatch.
var ErrBadSignature = errors.New("notify: signature does not match the body")

// VerifySignature checks a SignatureHeader value against body, in
// constant time. Receivers (and the demo's local sink) use it on the raw
// body before parsing it.
func VerifySignature(key, body []byte, header string) error {
	hexSum, ok := strings.CutPrefix(strings.TrimSpace(header), "sha256=")
	if !ok {
		return errors.New("notify: signature header must be sha256=<hex>")
	}
	got, err := hex.DecodeString(hexSum)
	if err != nil || len(got) != sha256.Size {
		return errors.New("notify: signature header must be sha256=<64 hex digits>")
	}
	m := hmac.New(sha256.New, key)
	m.Write(body)
	if !hmac.Equal(got, m.Sum(nil)) {
		return ErrBadSignature
	}
	return nil
}
