package pipelines

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/nats-io/nats.go/jetstream"
)

// Replays and superseding.
//
// A push delivery is signed over its body only, so a body can be posted
// again with a new X-GitHub-Delivery. Two guards keep that from rolling a
// function back:
//
//   - the push guard: within queue.deliveryTTL, a push is known by its
//     repository, ref, before and after, whatever the delivery id; a second
//     delivery of the same push answers with the first run (duplicate);
//   - ordering by git ancestry, never by arrival: a run is superseded only
//     by a run whose commit descends from its own (Supersede, called by the
//     checkout stage once the history is fetched), and the deploy step
//     refuses a commit that is not a fast-forward of the deployed one.
//
// `before` is part of the push's key so that a genuine force push back to
// an older commit (a new push: its before differs) is not taken for a
// replay; it then meets the deploy step's fast-forward check.

// maxHeads bounds the runs remembered per repo and ref.
const maxHeads = 32

func pushKey(req Request) string {
	return hashKey("push\x00" + strings.ToLower(req.Repo) + "\x00" + req.Ref + "\x00" + req.Before + "\x00" + req.Commit)
}

// pushGuard claims the push of req for run id. ok reports that the push
// was queued before as another run: dup names it, and the delivery id
// (dkey) now points at that run too, so that GitHub's redeliveries of
// this delivery get the same answer.
func (q *Queue) pushGuard(ctx context.Context, req Request, id, dkey string) (dup Enqueued, ok bool, err error) {
	if req.Commit == "" {
		return Enqueued{}, false, nil
	}
	key := pushKey(req)
	for range 10 {
		_, err := q.pushes.Create(ctx, key, []byte(id))
		if err == nil {
			return Enqueued{}, false, nil
		}
		if !errors.Is(err, jetstream.ErrKeyExists) {
			return Enqueued{}, false, fmt.Errorf("queue: push guard: %w", err)
		}
		e, err := q.pushes.Get(ctx, key)
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			continue // expired in between
		}
		if err != nil {
			return Enqueued{}, false, fmt.Errorf("queue: push guard: %w", err)
		}
		other := string(e.Value())
		if other == id {
			return Enqueued{}, false, nil // an earlier attempt of this delivery
		}
		run, err := q.Get(ctx, other)
		if errors.Is(err, ErrNotFound) || !ValidRunID(other) {
			// The delivery that claimed the push died before writing its
			// run: this one takes the push over.
			if _, err := q.pushes.Update(ctx, key, []byte(id), e.Revision()); errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
				continue
			} else if err != nil {
				return Enqueued{}, false, fmt.Errorf("queue: push guard: %w", err)
			}
			return Enqueued{}, false, nil
		}
		if err != nil {
			return Enqueued{}, false, err
		}
		if _, err := q.deliveries.Put(ctx, dkey, []byte(other)); err != nil {
			return Enqueued{}, false, fmt.Errorf("queue: delivery guard: %w", err)
		}
		q.log.Info("push delivered again under a new delivery id: answered with its run", "run", other,
			"repo", req.Repo, "ref", req.Ref, "commit", req.Commit, "delivery", req.DeliveryID)
		return Enqueued{RunID: other, Duplicate: true, SamePush: true, State: run.State}, true, nil
	}
	return Enqueued{}, false, errors.New("queue: push guard: too many concurrent updates")
}

func headsKey(repo, ref string) string {
	return hashKey(strings.ToLower(repo) + "\x00" + ref)
}

// recordHead adds run to the recent runs of its repo and ref. Nothing is
// cancelled here: which run supersedes which is decided by git ancestry
// once the commits are fetched (Supersede), never by arrival order, which
// a replayed delivery controls.
func (q *Queue) recordHead(ctx context.Context, run Run) error {
	key := headsKey(run.Repo, run.Ref)
	for range 10 {
		e, err := q.heads.Get(ctx, key)
		var ids []string
		var rev uint64
		switch {
		case errors.Is(err, jetstream.ErrKeyNotFound):
		case err != nil:
			return err
		default:
			rev = e.Revision()
			// Older records hold one bare run id.
			if json.Unmarshal(e.Value(), &ids) != nil {
				ids = []string{string(e.Value())}
			}
		}
		if slices.Contains(ids, run.ID) {
			return nil
		}
		ids = append(ids, run.ID)
		if len(ids) > maxHeads {
			ids = ids[len(ids)-maxHeads:]
		}
		b, _ := json.Marshal(ids)
		if rev == 0 {
			_, err = q.heads.Create(ctx, key, b)
		} else {
			_, err = q.heads.Update(ctx, key, b, rev)
		}
		if errors.Is(err, jetstream.ErrKeyExists) || errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
			continue
		}
		return err
	}
	return errors.New("too many concurrent updates")
}

// inFlight returns the queued and running runs of repo and ref, but id.
func (q *Queue) inFlight(ctx context.Context, repo, ref, id string) ([]Run, error) {
	e, err := q.heads.Get(ctx, headsKey(repo, ref))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("queue: runs of %s %s: %w", repo, ref, err)
	}
	var ids []string
	if json.Unmarshal(e.Value(), &ids) != nil {
		ids = []string{string(e.Value())}
	}
	var out []Run
	for _, other := range ids {
		if other == id || !ValidRunID(other) {
			continue
		}
		r, err := q.Get(ctx, other)
		if errors.Is(err, ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, err
		}
		if !r.State.Final() && r.Commit != "" {
			out = append(out, *r)
		}
	}
	return out, nil
}

// Order is how a run's commit relates to another run's commit.
type Order int

// Orders of two commits of one ref.
const (
	// Unordered: neither commit is known to be in the other's history
	// (rewritten or unrelated histories, or beyond the depth fetched).
	Unordered Order = iota
	// SameCommit: both runs are for one commit.
	SameCommit
	// Newer: the run's commit descends from the other's.
	Newer
	// Older: the run's commit is in the other's history.
	Older
)

// OrderFunc orders the run's commit against each of commits (the commits
// of other runs of its ref); a commit missing from the answer is
// Unordered.
type OrderFunc func(ctx context.Context, commits []string) (map[string]Order, error)

// Supersession is what Supersede decided.
type Supersession struct {
	// Stopped: the run was cancelled in favour of By (a run of a newer
	// commit, or an earlier run of the same commit, still in flight);
	// Reason says so, naming both commits. The stage must stop.
	Stopped bool
	By      string
	Reason  string
	// Cancelled lists runs of older commits this run cancelled.
	Cancelled []string
}

type queueKey struct{}

// withQueue lets the stages of a run reach its queue (Supersede).
func withQueue(ctx context.Context, q *Queue) context.Context {
	return context.WithValue(ctx, queueKey{}, q)
}

// Supersede orders run against the other queued and running runs of its
// repo and ref, by git ancestry (order), when the queue's
// CancelSuperseded is on: runs of commits in this run's history are
// cancelled; when a run of a commit that descends from this one is in
// flight (or of the same commit, queued earlier), this run is cancelled
// instead and the other is left alone. An older commit never cancels a
// newer one, whatever their arrival order. Outside a worker (gantry run)
// it does nothing.
func Supersede(ctx context.Context, run Run, order OrderFunc) (Supersession, error) {
	q, ok := ctx.Value(queueKey{}).(*Queue)
	if !ok || !q.opts.CancelSuperseded {
		return Supersession{}, nil
	}
	others, err := q.inFlight(ctx, run.Repo, run.Ref, run.ID)
	if err != nil || len(others) == 0 {
		return Supersession{}, err
	}
	var commits []string
	for _, o := range others {
		if o.Commit != run.Commit && !slices.Contains(commits, o.Commit) {
			commits = append(commits, o.Commit)
		}
	}
	orders := map[string]Order{}
	if len(commits) > 0 {
		if orders, err = order(ctx, commits); err != nil {
			return Supersession{}, err
		}
	}
	var res Supersession
	for _, o := range others {
		ord := orders[o.Commit]
		if o.Commit == run.Commit {
			ord = SameCommit
		}
		var reason string
		switch {
		case ord == Older:
			reason = fmt.Sprintf("superseded: commit %s is older than commit %s (it is in that commit's history), which run %s builds for %s", short(run.Commit), short(o.Commit), o.ID, run.Ref)
		case ord == SameCommit && o.ID < run.ID:
			reason = fmt.Sprintf("superseded: commit %s is already being built by run %s", short(run.Commit), o.ID)
		}
		if reason != "" {
			if _, err := q.cancel(ctx, run.ID, reason, o.ID); err != nil && !errors.Is(err, ErrFinal) {
				return res, err
			}
			return Supersession{Stopped: true, By: o.ID, Reason: reason, Cancelled: res.Cancelled}, nil
		}
	}
	for _, o := range others {
		if o.Commit == run.Commit || orders[o.Commit] != Newer {
			continue
		}
		reason := fmt.Sprintf("superseded by run %s: its commit %s descends from commit %s", run.ID, short(run.Commit), short(o.Commit))
		_, err := q.cancel(ctx, o.ID, reason, run.ID)
		switch {
		case err == nil:
			res.Cancelled = append(res.Cancelled, o.ID)
		case errors.Is(err, ErrFinal), errors.Is(err, ErrNotFound):
		default:
			return res, err
		}
	}
	return res, nil
}

func short(sha string) string {
	if len(sha) > 12 {
		return sha[:12]
	}
	return sha
}
