package pipelines

import (
	"testing"
	"time"
)

func TestRunIDsSortByCreationWithinAMillisecond(t *testing.T) {
	now := time.Now()
	prev := ""
	for i := range 70000 { // more than the 16-bit sequence
		id := NewRunID(now)
		if !ValidRunID(id) {
			t.Fatalf("invalid id %q", id)
		}
		if id <= prev {
			t.Fatalf("id %d %s does not sort after %s", i, id, prev)
		}
		prev = id
	}
	for _, bad := range []string{"", "../../etc/passwd", "01A215EF938C9567DD8B", "01a215ef938c9567dd8", "01a215ef938c9567dd8bx"} {
		if ValidRunID(bad) {
			t.Errorf("ValidRunID(%q)", bad)
		}
	}
}
