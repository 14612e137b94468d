package report

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"
)

func TestCompare(t *testing.T) {
	r := New("verify")
	cosign := r.Duration("cosign verify", Process, 80*time.Millisecond, 20)
	gantry := r.Duration("gantry verify", Process, 60*time.Millisecond, 20)
	if err := r.Compare(gantry, *cosign, "<=1.0"); err != nil {
		t.Fatal(err)
	}
	if *gantry.Ratio != 0.75 || !*gantry.Met || *gantry.Baseline != "cosign verify" || *gantry.BaselineValue != 80 {
		t.Errorf("got ratio %v met %v baseline %v=%v", *gantry.Ratio, *gantry.Met, *gantry.Baseline, *gantry.BaselineValue)
	}
	slow := r.Duration("gantry verify slow", Process, 100*time.Millisecond, 20)
	if err := r.Compare(slow, *cosign, "<=1.0"); err != nil || *slow.Met {
		t.Errorf("1.25× met <=1.0: %v %v", err, *slow.Met)
	}
	fast := r.Duration("gantry fast", Process, 8*time.Millisecond, 20)
	if err := r.Compare(fast, *cosign, ">=0.2"); err != nil || *fast.Met {
		t.Errorf("0.1 met >=0.2: %v %v", err, *fast.Met)
	}

	lib := r.Duration("gantry library", InProcess, time.Millisecond, 20)
	if err := r.Compare(lib, *cosign, "<=1.0"); err == nil || lib.Ratio != nil {
		t.Errorf("an in-process figure was compared with a process: %v", err)
	}
	for _, bad := range []string{"1.0", "<1.0", "<=x", "=="} {
		f := r.Duration("x", Process, time.Millisecond, 1)
		if err := r.Compare(f, *cosign, bad); err == nil {
			t.Errorf("target %q accepted", bad)
		}
	}
}

func TestWriteJSON(t *testing.T) {
	r := New("scan")
	base := r.Duration("trivy image", Process, 2*time.Second, 7)
	g := r.Duration("gantry scan", Process, 1500*time.Millisecond, 7)
	for i := range 20 { // later figures must not detach g from the report
		r.Duration(fmt.Sprint("filler ", i), Process, time.Millisecond, 1)
	}
	if err := r.Compare(g, *base, "<=1.0"); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := r.WriteJSON(&buf); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 22 {
		t.Fatalf("%d lines, want 22:\n%s", len(lines), buf.String())
	}
	want := []string{"bench", "name", "kind", "value", "unit", "baseline", "baseline_value", "ratio", "target", "met", "samples"}
	for i, l := range lines {
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatal(err)
		}
		for _, k := range want {
			if _, ok := m[k]; !ok {
				t.Errorf("line %d has no %q: %s", i, k, l)
			}
		}
	}
	if !strings.Contains(lines[1], `"target":"<=1.0"`) {
		t.Errorf("target not written as typed: %s", lines[1])
	}
	var f Figure
	if err := json.Unmarshal([]byte(lines[1]), &f); err != nil {
		t.Fatal(err)
	}
	if f.Value != 1500 || f.Unit != "ms" || *f.Ratio != 0.75 || !*f.Met || *f.Target != "<=1.0" || f.Samples != 7 {
		t.Errorf("line 2 = %+v", f)
	}
	if !strings.Contains(lines[0], `"baseline":null`) || !strings.Contains(lines[0], `"met":null`) {
		t.Errorf("a figure without a baseline must say null: %s", lines[0])
	}
}

func TestBound(t *testing.T) {
	r := New("admission")
	trips := r.Add(Figure{Name: "registry round trips per cold review", Kind: InProcess, Value: 3, Unit: "requests", Samples: 20})
	if err := r.Bound(trips, "<=2"); err != nil || *trips.Met {
		t.Errorf("3 round trips met <=2: %v", err)
	}
	two := r.Add(Figure{Name: "two", Kind: InProcess, Value: 2, Unit: "requests", Samples: 20})
	if err := r.Bound(two, "<=2"); err != nil || !*two.Met {
		t.Errorf("2 round trips missed <=2: %v", err)
	}
	base := r.Add(Figure{Name: "base", Kind: InProcess, Value: 4, Unit: "requests", Samples: 20})
	if err := r.Compare(two, *base, ""); err != nil {
		t.Fatal(err)
	}
	if err := r.Bound(two, "<=2"); err == nil {
		t.Error("a figure with a baseline took an absolute target")
	}
}
