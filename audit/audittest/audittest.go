// Package audittest reads audit logs back in tests.
package audittest

import (
	"bufio"
	"encoding/json"
	"os"
	"testing"

	"github.com/gantry-dev/gantry/audit"
)

// ReadFile returns the records of a JSON-lines audit file, failing t on a
// line that is not a record.
func ReadFile(t testing.TB, path string) []audit.Event {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []audit.Event
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		var e audit.Event
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			t.Fatalf("audit line %q: %v", sc.Text(), err)
		}
		out = append(out, e)
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}
