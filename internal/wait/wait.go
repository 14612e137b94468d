// Package wait lets tests wait for a condition instead of sleeping for a
// time that is hoped to be long enough: For polls until the condition
// holds and fails the test, naming what it waited for and the last state
// seen, when it does not hold in time. The timeout only bounds a hang; it
// is not a timing assertion.
package wait

import (
	"testing"
	"time"
)

// Poll intervals: quick at first (most conditions hold within
// milliseconds), then backing off so that a slow one does not hammer the
// daemon it asks.
const (
	firstInterval = 5 * time.Millisecond
	maxInterval   = 200 * time.Millisecond
	// margin is left before the test binary's -timeout so that a wait
	// fails with its own message, not with a panic dump of every goroutine.
	margin = 5 * time.Second
)

// For calls f until it returns a nil error and returns its value. f's
// error describes the state while the condition does not hold yet; if the
// condition has not held after timeout (or shortly before the test's own
// deadline), For fails t with what and the last error. f runs on the
// calling goroutine, so it may call t.Fatal for a failure that no amount
// of waiting will cure.
func For[T any](t testing.TB, timeout time.Duration, what string, f func() (T, error)) T {
	t.Helper()
	deadline := time.Now().Add(timeout)
	if td, ok := t.(interface{ Deadline() (time.Time, bool) }); ok {
		if d, ok := td.Deadline(); ok && d.Add(-margin).Before(deadline) {
			deadline = d.Add(-margin)
		}
	}
	interval := firstInterval
	for {
		v, err := f()
		if err == nil {
			return v
		}
		if !time.Now().Before(deadline) {
			t.Fatalf("waited %s for %s: %v", timeout, what, err)
			var zero T
			return zero
		}
		time.Sleep(min(interval, time.Until(deadline)))
		interval = min(2*interval, maxInterval)
	}
}

// Until is For for a condition without a value.
func Until(t testing.TB, timeout time.Duration, what string, f func() error) {
	t.Helper()
	For(t, timeout, what, func() (struct{}, error) { return struct{}{}, f() })
}
