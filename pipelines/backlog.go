package pipelines

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"

	"github.com/nats-io/nats.go/jetstream"
)

// Backlog counts queued runs per repository, for the receiver's bound on
// queued runs (webhooks.maxQueuedPerRepo). It follows the run records with
// a JetStream KV watch, so runs queued by other processes count too, and a
// count costs no store read.
type Backlog struct {
	mu     sync.Mutex
	queued map[string]map[string]struct{} // lower-case repo -> run ids
	repoOf map[string]string              // run id -> lower-case repo, for queued runs
	synced chan struct{}
	err    error
	stop   func() error
}

// WatchBacklog starts following the run records. Stop it with Close.
func (q *Queue) WatchBacklog(ctx context.Context) (*Backlog, error) {
	w, err := q.runs.WatchAll(ctx)
	if err != nil {
		return nil, fmt.Errorf("queue: watch runs: %w", err)
	}
	b := &Backlog{
		queued: map[string]map[string]struct{}{}, repoOf: map[string]string{},
		synced: make(chan struct{}), stop: w.Stop,
	}
	go b.follow(w)
	return b, nil
}

func (b *Backlog) follow(w jetstream.KeyWatcher) {
	synced := false
	for e := range w.Updates() {
		if e == nil { // the initial values are all delivered
			if !synced {
				synced = true
				close(b.synced)
			}
			continue
		}
		b.apply(e)
	}
	b.mu.Lock()
	b.err = errors.New("queue: the run watch ended")
	b.mu.Unlock()
	if !synced {
		close(b.synced)
	}
}

func (b *Backlog) apply(e jetstream.KeyValueEntry) {
	id := e.Key()
	var run struct {
		Repo  string `json:"repo"`
		State State  `json:"state"`
	}
	queued := e.Operation() == jetstream.KeyValuePut && json.Unmarshal(e.Value(), &run) == nil && run.State == StateQueued
	b.mu.Lock()
	defer b.mu.Unlock()
	if old, ok := b.repoOf[id]; ok {
		delete(b.queued[old], id)
		if len(b.queued[old]) == 0 {
			delete(b.queued, old)
		}
		delete(b.repoOf, id)
	}
	if queued {
		repo := strings.ToLower(run.Repo)
		if b.queued[repo] == nil {
			b.queued[repo] = map[string]struct{}{}
		}
		b.queued[repo][id] = struct{}{}
		b.repoOf[id] = repo
	}
}

// Queued returns how many runs of repo are queued. It waits for the
// initial sync; after the watch has ended it fails (closed: the caller
// must not treat an unknown backlog as empty).
func (b *Backlog) Queued(ctx context.Context, repo string) (int, error) {
	select {
	case <-b.synced:
	case <-ctx.Done():
		return 0, fmt.Errorf("queue: backlog not loaded yet: %w", ctx.Err())
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.err != nil {
		return 0, b.err
	}
	return len(b.queued[strings.ToLower(repo)]), nil
}

// Close stops the watch.
func (b *Backlog) Close() error { return b.stop() }
