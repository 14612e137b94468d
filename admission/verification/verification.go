// Package verification puts a cache in front of image signature
// verification: entries are keyed by image digest and the verify policy's
// version (so a policy change is seen at once), verified answers are kept
// for a long TTL and refusals for a short one, the cache is bounded, and
// concurrent checks of one digest make one registry round trip.
package verification

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"golang.org/x/sync/singleflight"
	"k8s.io/apimachinery/pkg/util/cache"
)

// Reason says why an image is not verified, in words a deny message can use.
type Reason string

// Reasons a verifier reports.
const (
	ReasonNoSignature Reason = "no signature"
	ReasonUntrusted   Reason = "untrusted key or identity"
	ReasonInvalid     Reason = "invalid signature"
	ReasonOther       Reason = "not verified"
)

// Result is one verification verdict.
type Result struct {
	Verified bool
	// Matched names the trusted identities that signed (when Verified).
	Matched []string
	// Reason and Message say why not (when !Verified).
	Reason  Reason
	Message string
}

// Verifier checks an image's signatures against a verify policy. It
// returns an error only when it could not decide (registry unreachable,
// timeout); a missing or untrusted signature is a Result with Verified
// false.
type Verifier interface {
	Verify(ctx context.Context, ref name.Digest) (Result, error)
	// PolicyVersion changes whenever the trusted identities change.
	PolicyVersion() string
}

// Options tune the cache.
type Options struct {
	PositiveTTL time.Duration
	NegativeTTL time.Duration
	MaxEntries  int
	// Clock is for tests; nil means the real clock.
	Clock cache.Clock
}

// Cache is a Verifier that remembers answers.
type Cache struct {
	v       Verifier
	o       Options
	entries *cache.LRUExpireCache
	group   singleflight.Group
	hits    atomic.Int64
	misses  atomic.Int64
}

// NewCache wraps v.
func NewCache(v Verifier, o Options) *Cache {
	if o.MaxEntries < 1 {
		o.MaxEntries = 10000
	}
	if o.Clock == nil {
		return &Cache{v: v, o: o, entries: cache.NewLRUExpireCache(o.MaxEntries)}
	}
	return &Cache{v: v, o: o, entries: cache.NewLRUExpireCacheWithClock(o.MaxEntries, o.Clock)}
}

// Stats returns cache hits and misses so far.
func (c *Cache) Stats() (hits, misses int64) { return c.hits.Load(), c.misses.Load() }

// PolicyVersion is the wrapped verifier's.
func (c *Cache) PolicyVersion() string { return c.v.PolicyVersion() }

// Verify answers from the cache, or asks the verifier once for all
// concurrent callers. Undecided answers (errors) are not cached: the next
// request tries again. The verifier runs on a context detached from the
// first caller's cancellation, bounded by that caller's deadline; every
// caller stops waiting at its own deadline.
func (c *Cache) Verify(ctx context.Context, ref name.Digest) (Result, error) {
	key := c.v.PolicyVersion() + "\x00" + ref.Context().Name() + "@" + ref.DigestStr()
	if v, ok := c.entries.Get(key); ok {
		c.hits.Add(1)
		return v.(Result), nil
	}
	c.misses.Add(1)
	ch := c.group.DoChan(key, func() (any, error) {
		// A flight that ended between our cache miss and this flight's
		// start has stored its answer: use it rather than verify again.
		if v, ok := c.entries.Get(key); ok {
			return v, nil
		}
		vctx := context.WithoutCancel(ctx)
		if dl, ok := ctx.Deadline(); ok {
			var cancel context.CancelFunc
			vctx, cancel = context.WithDeadline(vctx, dl)
			defer cancel()
		}
		r, err := c.v.Verify(vctx, ref)
		if err != nil {
			return nil, err
		}
		ttl := c.o.NegativeTTL
		if r.Verified {
			ttl = c.o.PositiveTTL
		}
		if ttl > 0 {
			c.entries.Add(key, r, ttl)
		}
		return r, nil
	})
	select {
	case r := <-ch:
		if r.Err != nil {
			return Result{}, r.Err
		}
		return r.Val.(Result), nil
	case <-ctx.Done():
		return Result{}, ctx.Err()
	}
}

// ErrDisabled is returned by Disabled.
var ErrDisabled = errors.New("signature verification is not configured (set admission.signerPolicy)")

// Disabled is a Verifier that can decide nothing: used when no signer
// policy is configured, so that rule 1 fails closed.
type Disabled struct{}

// Verify always fails.
func (Disabled) Verify(context.Context, name.Digest) (Result, error) {
	return Result{}, ErrDisabled
}

// PolicyVersion is constant.
func (Disabled) PolicyVersion() string { return "disabled" }

// Describe formats a result for a deny message.
func Describe(r Result) string {
	if r.Verified {
		return "verified"
	}
	if r.Message != "" {
		return fmt.Sprintf("%s: %s", r.Reason, r.Message)
	}
	return string(r.Reason)
}
