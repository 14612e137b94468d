// Package pipelines holds Gantry's run model and the machinery that moves a
// run from "a push was received" to "every stage finished": a durable work
// queue, the run record store and the workers that execute a pluggable list
// of stages, all on NATS JetStream (embedded, or an external cluster with
// the same code path).
//
// Delivery semantics are at-least-once: a run message is acknowledged only
// after its record reaches a final state, so a worker that dies mid-run
// leaves the message to be redelivered. On redelivery the worker resumes the
// run: stages already recorded as passed are not run again, the stage that
// was running is run again from its start. Stages must therefore be
// idempotent (building the same commit twice, re-pushing the same digest).
// A run record is the single source of truth; it is updated with
// compare-and-set, so a cancel and a worker never overwrite each other.
package pipelines

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"strings"
	"sync"
	"time"
)

// State is the state of a run or of one of its stages.
type State string

// The states of runs and stages. Passed, failed, cancelled and error are
// final for a run.
const (
	StateQueued    State = "queued"
	StateRunning   State = "running"
	StatePassed    State = "passed"
	StateFailed    State = "failed"
	StateCancelled State = "cancelled"
	StateError     State = "error"
)

// States lists every state, for validation of user filters.
var States = []State{StateQueued, StateRunning, StatePassed, StateFailed, StateCancelled, StateError}

// Final reports whether a run in state s will never change again.
func (s State) Final() bool {
	switch s {
	case StatePassed, StateFailed, StateCancelled, StateError:
		return true
	}
	return false
}

// Valid reports whether s is one of States.
func (s State) Valid() bool {
	for _, v := range States {
		if s == v {
			return true
		}
	}
	return false
}

// Request is a verified push, as the receiver hands it to the queue.
type Request struct {
	// DeliveryID is GitHub's X-GitHub-Delivery; the replay guard key.
	DeliveryID string
	// Repo is "owner/name".
	Repo string
	// CloneURL is the repository's HTTPS clone URL.
	CloneURL string
	// Ref is the full ref that was pushed (refs/heads/main, refs/tags/v1).
	Ref string
	// Commit is the pushed commit SHA (the push's "after").
	Commit string
	// Before is the SHA the ref pointed at before the push (the push's
	// "before"); with Repo, Ref and Commit it names the push for the
	// replay guard, whatever the delivery id.
	Before string
	// Pusher is the GitHub login (or name) of who pushed.
	Pusher string
	// Title is the first line of the head commit message.
	Title string
}

// Run is the record of one pipeline run. It is stored as JSON and served by
// the API as is, so field names are part of Gantry's interface.
type Run struct {
	ID         string     `json:"id"`
	Repo       string     `json:"repo"`
	CloneURL   string     `json:"cloneURL,omitempty"`
	Ref        string     `json:"ref"`
	Commit     string     `json:"commit"`
	Pusher     string     `json:"pusher,omitempty"`
	Title      string     `json:"title,omitempty"`
	DeliveryID string     `json:"deliveryId"`
	State      State      `json:"state"`
	Message    string     `json:"message,omitempty"`
	CreatedAt  time.Time  `json:"createdAt"`
	StartedAt  *time.Time `json:"startedAt,omitempty"`
	FinishedAt *time.Time `json:"finishedAt,omitempty"`
	// Attempts counts executions of the run: how often a worker took its
	// lease to execute it (deliveries that found the run store unavailable
	// or the run leased by another worker do not count).
	Attempts int `json:"attempts"`
	// Stages is filled by the first worker that picks the run up, in the
	// order the stages run.
	Stages []StageStatus `json:"stages"`
	// Outputs collects what stages hand to later stages and to users (for
	// example the image digest a build produced).
	Outputs map[string]string `json:"outputs,omitempty"`
	// SupersededBy names the newer run of the same repo and ref that
	// cancelled this one.
	SupersededBy string `json:"supersededBy,omitempty"`
	// Lease is held by the worker executing the run, renewed with its
	// heartbeats. A second delivery of the run (at-least-once) waits for
	// the lease to end instead of executing the run concurrently.
	Lease *Lease `json:"lease,omitempty"`
	// Seal is the receiver's signature over the origin fields (see
	// seal.go); workers execute only runs whose seal verifies.
	Seal *Seal `json:"seal,omitempty"`
}

// Lease marks a run as being executed by one worker until Until.
type Lease struct {
	Holder string    `json:"holder"`
	Until  time.Time `json:"until"`
}

// StageStatus is the record of one stage of a run.
type StageStatus struct {
	Name       string     `json:"name"`
	State      State      `json:"state"`
	StartedAt  *time.Time `json:"startedAt,omitempty"`
	FinishedAt *time.Time `json:"finishedAt,omitempty"`
	Message    string     `json:"message,omitempty"`
	// Attempts counts how often the stage was started (more than one after
	// a worker died or a transient error was retried).
	Attempts int `json:"attempts,omitempty"`
	// LogBytes is the size of the stored log (GET /api/v1/runs/{id}/logs).
	LogBytes int `json:"logBytes,omitempty"`
	// Log names the stored log object of the execution recorded here
	// (see logName); empty: RUN/STAGE, the first execution's.
	Log string `json:"log,omitempty"`
}

// Stage returns the status of the named stage, or nil.
func (r *Run) Stage(name string) *StageStatus {
	for i := range r.Stages {
		if r.Stages[i].Name == name {
			return &r.Stages[i]
		}
	}
	return nil
}

// finish puts r in a final state and closes every stage that has not ended.
func (r *Run) finish(state State, msg string, now time.Time) {
	r.State = state
	r.Message = msg
	r.FinishedAt = &now
	r.Lease = nil
	for i := range r.Stages {
		s := &r.Stages[i]
		if s.State == StateQueued || s.State == StateRunning {
			s.State = StateCancelled
			if s.StartedAt != nil {
				s.FinishedAt = &now
			}
			if s.Message == "" {
				s.Message = "not run: " + msg
			}
		}
	}
}

// NewRunID returns a new run id: 12 hex digits of milliseconds since the
// epoch, 4 of a per-process sequence within the millisecond, 4 random. Ids
// from one process sort by creation (the API lists newest first by id, and
// a newer push supersedes an older one by id) even within a millisecond.
func NewRunID(now time.Time) string {
	var b [2]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails (Go ≥ 1.24)
	idMu.Lock()
	ms := now.UnixMilli()
	if ms <= idLastMs {
		ms = idLastMs
		idSeq++
		if idSeq > 0xffff {
			ms, idSeq = ms+1, 0
		}
	} else {
		idSeq = 0
	}
	idLastMs = ms
	seq := idSeq
	idMu.Unlock()
	return fmt.Sprintf("%012x%04x%s", ms, seq, hex.EncodeToString(b[:]))
}

var (
	idMu     sync.Mutex
	idLastMs int64
	idSeq    int
)

// ValidRunID reports whether s has the form NewRunID makes. Ids reach KV
// keys and object names, so nothing else may.
func ValidRunID(s string) bool {
	if len(s) != 20 {
		return false
	}
	return strings.Trim(s, "0123456789abcdef") == ""
}
