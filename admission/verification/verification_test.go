package verification

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	testclock "k8s.io/utils/clock/testing"

	"github.com/gantry-dev/gantry/internal/wait"
)

type countingVerifier struct {
	calls   atomic.Int64
	version string
	gate    chan struct{} // when set, Verify waits for it
	result  func(name.Digest) (Result, error)
}

func (c *countingVerifier) PolicyVersion() string { return c.version }

func (c *countingVerifier) Verify(ctx context.Context, d name.Digest) (Result, error) {
	c.calls.Add(1)
	if c.gate != nil {
		select {
		case <-c.gate:
		case <-ctx.Done():
			return Result{}, ctx.Err()
		}
	}
	return c.result(d)
}

func digest(t *testing.T, i int) name.Digest {
	t.Helper()
	d, err := name.NewDigest("example.com/app@sha256:" + strings.Repeat(string(rune('a'+i%6)), 64))
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func TestTTLsAndPolicyVersion(t *testing.T) {
	clock := testclock.NewFakeClock(time.Now())
	verified := map[string]bool{}
	v := &countingVerifier{version: "p1", result: func(d name.Digest) (Result, error) {
		if verified[d.DigestStr()] {
			return Result{Verified: true}, nil
		}
		return Result{Reason: ReasonNoSignature}, nil
	}}
	c := NewCache(v, Options{PositiveTTL: 10 * time.Minute, NegativeTTL: 30 * time.Second, MaxEntries: 10, Clock: clock})
	ctx := context.Background()
	good, bad := digest(t, 0), digest(t, 1)
	verified[good.DigestStr()] = true
	steps := []struct {
		advance time.Duration
		d       name.Digest
		calls   int64
	}{
		{0, good, 1}, {0, good, 1}, {0, bad, 2}, {0, bad, 2},
		{31 * time.Second, bad, 3},  // negative entry expired
		{0, good, 3},                // positive entry still fresh
		{10 * time.Minute, good, 4}, // positive entry expired
	}
	for i, s := range steps {
		clock.Step(s.advance)
		if _, err := c.Verify(ctx, s.d); err != nil {
			t.Fatal(err)
		}
		if got := v.calls.Load(); got != s.calls {
			t.Fatalf("step %d: %d verifier calls, want %d", i, got, s.calls)
		}
	}
	v.version = "p2" // the trusted identities changed
	if _, err := c.Verify(ctx, good); err != nil || v.calls.Load() != 5 {
		t.Fatalf("policy change not seen: %d calls, %v", v.calls.Load(), err)
	}
}

func TestErrorsAreNotCached(t *testing.T) {
	fail := true
	v := &countingVerifier{version: "p", result: func(name.Digest) (Result, error) {
		if fail {
			return Result{}, errors.New("connection refused")
		}
		return Result{Verified: true}, nil
	}}
	c := NewCache(v, Options{PositiveTTL: time.Hour, NegativeTTL: time.Hour, MaxEntries: 10})
	if _, err := c.Verify(context.Background(), digest(t, 0)); err == nil {
		t.Fatal("error swallowed")
	}
	fail = false
	r, err := c.Verify(context.Background(), digest(t, 0))
	if err != nil || !r.Verified || v.calls.Load() != 2 {
		t.Fatalf("r=%+v err=%v calls=%d", r, err, v.calls.Load())
	}
}

func TestSingleflight(t *testing.T) {
	v := &countingVerifier{version: "p", gate: make(chan struct{}), result: func(name.Digest) (Result, error) { return Result{Verified: true}, nil }}
	c := NewCache(v, Options{PositiveTTL: time.Hour, MaxEntries: 10})
	var wg sync.WaitGroup
	const n = 50
	started := make(chan struct{}, n)
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			started <- struct{}{}
			if r, err := c.Verify(context.Background(), digest(t, 0)); err != nil || !r.Verified {
				t.Errorf("r=%+v err=%v", r, err)
			}
		}()
	}
	for range n {
		<-started
	}
	// Wait until every caller has registered as a miss (and so joined the
	// one flight) before letting the verifier answer.
	wait.Until(t, 10*time.Second, fmt.Sprintf("%d callers to register as misses", n), func() error {
		if _, m := c.Stats(); m != n {
			return fmt.Errorf("%d misses", m)
		}
		return nil
	})
	close(v.gate)
	wg.Wait()
	if v.calls.Load() != 1 {
		t.Fatalf("%d verifier calls for %d concurrent requests", v.calls.Load(), n)
	}
}

func TestCallerDeadline(t *testing.T) {
	v := &countingVerifier{version: "p", gate: make(chan struct{}), result: func(name.Digest) (Result, error) { return Result{Verified: true}, nil }}
	c := NewCache(v, Options{PositiveTTL: time.Hour, MaxEntries: 10})
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, err := c.Verify(ctx, digest(t, 0)); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err %v, want deadline exceeded", err)
	}
	close(v.gate)
}

func TestBounded(t *testing.T) {
	v := &countingVerifier{version: "p", result: func(name.Digest) (Result, error) { return Result{Verified: true}, nil }}
	c := NewCache(v, Options{PositiveTTL: time.Hour, MaxEntries: 2})
	for _, i := range []int{0, 1, 2, 0} { // the last one evicted (least recently used)
		if r, err := c.Verify(context.Background(), digest(t, i)); err != nil || !r.Verified {
			t.Fatalf("Verify(%d): %+v %v", i, r, err)
		}
	}
	if v.calls.Load() != 4 {
		t.Fatalf("%d calls, want 4 (the oldest entry evicted)", v.calls.Load())
	}
	if n := len(c.entries.Keys()); n > 2 {
		t.Fatalf("%d entries kept", n)
	}
}
