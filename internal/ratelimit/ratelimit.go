// Package ratelimit holds keyed token buckets (golang.org/x/time/rate) for
// Gantry's HTTP servers: one bucket per client address, repository or
// token, with bounded memory, and the HTTP answer for a refusal (429 with
// Retry-After).
package ratelimit

import (
	"math"
	"net/http"
	"strconv"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// Limit is a token bucket: Rate events per second on average, Burst at once.
// A zero Rate means no limit.
type Limit struct {
	Rate  float64
	Burst int
}

// Off reports whether the limit is disabled.
func (l Limit) Off() bool { return l.Rate <= 0 }

// Keyed is a set of token buckets, one per key. It tracks at most maxKeys
// keys: when full, it forgets keys whose bucket has refilled (they are
// indistinguishable from a new key), and if every tracked key is still
// busy, new keys share one overflow bucket, so a flood of distinct keys
// costs bounded memory and is itself limited. A nil *Keyed allows all.
type Keyed struct {
	limit   rate.Limit
	burst   int
	maxKeys int
	now     func() time.Time

	mu       sync.Mutex
	buckets  map[string]*rate.Limiter
	overflow *rate.Limiter
}

// New returns the buckets for l, or nil (no limit) when l is off.
func New(l Limit, maxKeys int) *Keyed {
	if l.Off() {
		return nil
	}
	if maxKeys < 1 {
		maxKeys = 1
	}
	burst := max(l.Burst, 1)
	return &Keyed{
		limit: rate.Limit(l.Rate), burst: burst, maxKeys: maxKeys, now: time.Now,
		buckets:  make(map[string]*rate.Limiter),
		overflow: rate.NewLimiter(rate.Limit(l.Rate), burst),
	}
}

// bucket returns key's bucket; callers hold k.mu.
func (k *Keyed) bucket(key string, now time.Time) *rate.Limiter {
	if b, ok := k.buckets[key]; ok {
		return b
	}
	if len(k.buckets) >= k.maxKeys {
		k.sweep(now)
		if len(k.buckets) >= k.maxKeys {
			return k.overflow
		}
	}
	b := rate.NewLimiter(k.limit, k.burst)
	k.buckets[key] = b
	return b
}

// sweep forgets buckets that are full again.
func (k *Keyed) sweep(now time.Time) {
	for key, b := range k.buckets {
		if b.TokensAt(now) >= float64(k.burst) {
			delete(k.buckets, key)
		}
	}
}

// Allow takes one token from key's bucket. When the bucket is empty it
// takes nothing and returns false and how long until a token is there.
func (k *Keyed) Allow(key string) (bool, time.Duration) {
	if k == nil {
		return true, 0
	}
	now := k.now()
	k.mu.Lock()
	defer k.mu.Unlock()
	b := k.bucket(key, now)
	r := b.ReserveN(now, 1)
	if d := r.DelayFrom(now); d > 0 {
		r.CancelAt(now)
		return false, d
	}
	return true, 0
}

// Blocked reports, without taking a token, whether key's bucket is empty,
// and how long until it holds one again. Used for failure budgets: a
// source is blocked once its failures have emptied the bucket.
func (k *Keyed) Blocked(key string) (bool, time.Duration) {
	if k == nil {
		return false, 0
	}
	now := k.now()
	k.mu.Lock()
	defer k.mu.Unlock()
	b, ok := k.buckets[key]
	if !ok {
		// No failure is on record for key (or it was forgotten when the
		// table was full): never block a source for others' failures.
		return false, 0
	}
	if t := b.TokensAt(now); t < 1 {
		return true, time.Duration((1 - t) / float64(k.limit) * float64(time.Second))
	}
	return false, 0
}

// Spend takes one token from key's bucket even if that empties it (a
// failure is counted whether or not the budget remains).
func (k *Keyed) Spend(key string) {
	if k == nil {
		return
	}
	now := k.now()
	k.mu.Lock()
	defer k.mu.Unlock()
	k.bucket(key, now).AllowN(now, 1)
}

// Len is the number of keys tracked (for tests and metrics).
func (k *Keyed) Len() int {
	if k == nil {
		return 0
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	return len(k.buckets)
}

// RetryAfterSeconds rounds a wait up to whole seconds (at least 1), the
// unit of the Retry-After header.
func RetryAfterSeconds(d time.Duration) int {
	return max(1, int(math.Ceil(d.Seconds())))
}

// Refuse answers 429 Too Many Requests with Retry-After and a short JSON
// body naming the limit.
func Refuse(w http.ResponseWriter, retry time.Duration, what string) {
	w.Header().Set("Retry-After", strconv.Itoa(RetryAfterSeconds(retry)))
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusTooManyRequests)
	_, _ = w.Write([]byte(`{"status":"error","error":"rate limit exceeded: ` + what + `; retry after the Retry-After seconds"}` + "\n"))
}
