// Package report is how every program under hack/bench states its
// figures: besides its human table, one JSON line per figure, so that
// someone else can read, diff and check them without parsing prose.
//
// A figure may name a baseline (the raw tool it is measured against); its
// ratio is then value / baseline value, and its target, when it has one, is
// a bound on that ratio ("<=1.05": at most 1.05 times the baseline;
// "<=0.10": at least 10 times faster). A figure is compared only with a
// baseline of the same kind: a process with a process, in-process work with
// in-process work; Compare refuses anything else, because a ratio of a
// process start against a function call measures the start-up, not the work.
package report

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
	"time"
)

// Kinds of figure.
const (
	// Process: the wall time (or rate) of running a program to its exit.
	Process = "process"
	// InProcess: work done by a function call in a running program, or a
	// request served by a running server (its client is in this program).
	InProcess = "in-process"
)

// Figure is one measured number. Its JSON form is the line a bench prints.
type Figure struct {
	Bench string  `json:"bench"`
	Name  string  `json:"name"`
	Kind  string  `json:"kind"`
	Value float64 `json:"value"`
	Unit  string  `json:"unit"`
	// Baseline is the name of the figure this one is compared with (nil:
	// none); BaselineValue its value in the same unit.
	Baseline      *string  `json:"baseline"`
	BaselineValue *float64 `json:"baseline_value"`
	// Ratio is Value / BaselineValue (nil without a baseline).
	Ratio *float64 `json:"ratio"`
	// Target bounds Ratio, e.g. "<=1.05" or ">=1.0", or Value when the
	// figure has no baseline (nil: none); Met says whether it is within it
	// (nil without a target).
	Target *string `json:"target"`
	Met    *bool   `json:"met"`
	// Samples is how many measurements the value summarises (the median
	// of Samples runs, or a rate over Samples requests).
	Samples int `json:"samples"`
}

// Millis is a duration as a figure value in milliseconds.
func Millis(d time.Duration) (float64, string) {
	return math.Round(float64(d)/float64(time.Millisecond)*1000) / 1000, "ms"
}

// Report collects the figures of one bench program.
type Report struct {
	bench string
	figs  []*Figure
}

// New starts the report of bench (the program's directory name).
func New(bench string) *Report { return &Report{bench: bench} }

// Duration records a duration figure (the median of samples runs, in ms).
func (r *Report) Duration(name, kind string, d time.Duration, samples int) *Figure {
	v, unit := Millis(d)
	return r.Add(Figure{Name: name, Kind: kind, Value: v, Unit: unit, Samples: samples})
}

// Add records f and returns it, to be compared.
func (r *Report) Add(f Figure) *Figure {
	f.Bench = r.bench
	r.figs = append(r.figs, &f)
	return &f
}

// Figures returns what was recorded, in order.
func (r *Report) Figures() []Figure {
	out := make([]Figure, len(r.figs))
	for i, f := range r.figs {
		out[i] = *f
	}
	return out
}

// Compare sets f's baseline to base and, when target is not "", checks
// the ratio against it ("<=X" or ">=X"). It refuses a baseline of another
// kind or unit, or a target it cannot read.
func (r *Report) Compare(f *Figure, base Figure, target string) error {
	if f.Kind != base.Kind {
		return fmt.Errorf("bench %s: %q (%s) compared with %q (%s): compare a process with a process, in-process work with in-process work",
			r.bench, f.Name, f.Kind, base.Name, base.Kind)
	}
	if f.Unit != base.Unit {
		return fmt.Errorf("bench %s: %q is in %s, its baseline %q in %s", r.bench, f.Name, f.Unit, base.Name, base.Unit)
	}
	if base.Value == 0 {
		return fmt.Errorf("bench %s: baseline %q is 0 %s", r.bench, base.Name, base.Unit)
	}
	name, bv := base.Name, base.Value
	ratio := math.Round(f.Value/bv*10000) / 10000
	f.Baseline, f.BaselineValue, f.Ratio = &name, &bv, &ratio
	if target == "" {
		return nil
	}
	met, err := within(ratio, target)
	if err != nil {
		return fmt.Errorf("bench %s: %q: %w", r.bench, f.Name, err)
	}
	f.Target, f.Met = &target, &met
	return nil
}

// Bound sets an absolute target on a figure without a baseline ("<=2":
// at most 2 of its unit); Target then bounds Value instead of Ratio.
func (r *Report) Bound(f *Figure, target string) error {
	if f.Baseline != nil {
		return fmt.Errorf("bench %s: %q has a baseline: its target bounds the ratio", r.bench, f.Name)
	}
	met, err := within(f.Value, target)
	if err != nil {
		return fmt.Errorf("bench %s: %q: %w", r.bench, f.Name, err)
	}
	f.Target, f.Met = &target, &met
	return nil
}

func within(ratio float64, target string) (bool, error) {
	op, num := target[:min(2, len(target))], strings.TrimSpace(target[min(2, len(target)):])
	x, err := strconv.ParseFloat(num, 64)
	if err != nil || (op != "<=" && op != ">=") {
		return false, fmt.Errorf("target %q: want <=X or >=X", target)
	}
	if op == "<=" {
		return ratio <= x, nil
	}
	return ratio >= x, nil
}

// WriteJSON writes one JSON line per figure.
func (r *Report) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false) // targets read "<=1.05", not "\u003c=1.05"
	for _, f := range r.figs {
		if err := enc.Encode(f); err != nil {
			return err
		}
	}
	return nil
}
