package wait_test

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/gantry-dev/gantry/internal/wait"
)

// recorder is a testing.TB that records a failure instead of ending the
// goroutine, so that the failure of For itself can be tested.
type recorder struct {
	testing.TB
	failed string
}

func (r *recorder) Helper() {}
func (r *recorder) Fatalf(format string, args ...any) {
	r.failed = fmt.Sprintf(format, args...)
}

func TestForReturnsOnceTheConditionHolds(t *testing.T) {
	calls := 0
	got := wait.For(t, 10*time.Second, "the third call", func() (int, error) {
		calls++
		if calls < 3 {
			return 0, fmt.Errorf("call %d", calls)
		}
		return calls, nil
	})
	if got != 3 || calls != 3 {
		t.Fatalf("For returned %d after %d calls, want 3 after 3", got, calls)
	}
}

func TestForFailsWithTheLastStateWhenTheConditionNeverHolds(t *testing.T) {
	r := &recorder{TB: t}
	calls := 0
	start := time.Now()
	v := wait.For(r, 100*time.Millisecond, "a condition that never holds", func() (string, error) {
		calls++
		return "partial", fmt.Errorf("state %d", calls)
	})
	if v != "" {
		t.Errorf("For returned %q after failing, want the zero value", v)
	}
	if !strings.Contains(r.failed, "a condition that never holds") || !strings.Contains(r.failed, fmt.Sprintf("state %d", calls)) {
		t.Errorf("failure %q does not name what was awaited and the last state (state %d)", r.failed, calls)
	}
	if calls < 2 {
		t.Errorf("the condition was checked %d times in 100ms: For did not poll", calls)
	}
	if el := time.Since(start); el > 5*time.Second {
		t.Errorf("For took %s to give up on a 100ms timeout", el)
	}
}

func TestUntilChecksOnceMoreAtTheDeadline(t *testing.T) {
	r := &recorder{TB: t}
	start := time.Now()
	wait.Until(r, 50*time.Millisecond, "the deadline", func() error {
		if time.Since(start) >= 50*time.Millisecond {
			return nil
		}
		return errors.New("too early")
	})
	if r.failed != "" {
		t.Fatalf("a condition that held at the deadline failed: %s", r.failed)
	}
}
