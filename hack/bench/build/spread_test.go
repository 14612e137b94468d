package main

import (
	"math"
	"testing"
	"time"
)

func ms(xs ...float64) []time.Duration {
	out := make([]time.Duration, len(xs))
	for i, x := range xs {
		out[i] = time.Duration(x * float64(time.Millisecond))
	}
	return out
}

func TestMedian(t *testing.T) {
	for _, tc := range []struct {
		in   []time.Duration
		want time.Duration
	}{
		{nil, 0},
		{ms(5), ms(5)[0]},
		{ms(9, 1, 5), ms(5)[0]},
		{ms(4, 1, 3, 2), ms(2.5)[0]},
	} {
		if got := median(tc.in); got != tc.want {
			t.Errorf("median(%v) = %v, want %v", tc.in, got, tc.want)
		}
	}
}

func TestRatioSpread(t *testing.T) {
	near := func(a, b float64) bool { return math.Abs(a-b) < 1e-9 }

	// Identical series: every resample has ratio 1.
	same := ms(100, 120, 90, 110, 105, 95)
	if s := ratioSpread(same, same); !near(s.Ratio, 1) || !near(s.Lo, 1) || !near(s.Hi, 1) || !near(s.First, 1) || !near(s.Second, 1) {
		t.Errorf("same series: %+v, want all 1", s)
	}

	// a is b plus 10% in every round: the paired resampling keeps it at 1.1.
	b := ms(100, 200, 150, 120, 180, 160, 110, 140)
	a := make([]time.Duration, len(b))
	for i := range b {
		a[i] = b[i] * 11 / 10
	}
	if s := ratioSpread(a, b); !near(s.Ratio, 1.1) || !near(s.Lo, 1.1) || !near(s.Hi, 1.1) ||
		!near(s.Paired, 1.1) || !near(s.PLo, 1.1) || !near(s.PHi, 1.1) {
		t.Errorf("a = 1.1 b: %+v, want every ratio and interval 1.1", s)
	}

	// Load that comes and goes, touching both of a round's runs alike: the
	// medians of each side mix slow and fast rounds, the per-round ratios
	// do not.
	b = ms(100, 300, 100, 300, 100, 300, 100, 300, 100)
	a = make([]time.Duration, len(b))
	for i := range b {
		a[i] = b[i] * 21 / 20
	}
	a[0], a[2] = ms(330)[0], ms(330)[0] // two rounds where a alone was slowed
	s := ratioSpread(a, b)
	if !near(s.Paired, 1.05) || s.PHi-s.PLo > s.Hi-s.Lo {
		t.Errorf("per-round ratio %v (interval %v-%v), ratio of medians %v (%v-%v): want 1.05 and a narrower interval",
			s.Paired, s.PLo, s.PHi, s.Ratio, s.Lo, s.Hi)
	}

	// Drift: a matches b in the first half and is twice as slow in the
	// second; the halves show it and the interval is wide.
	b = ms(100, 100, 100, 100, 100, 100)
	a = ms(100, 100, 100, 200, 200, 200)
	s = ratioSpread(a, b)
	if !near(s.First, 1) || !near(s.Second, 2) {
		t.Errorf("drift: halves %v / %v, want 1 / 2", s.First, s.Second)
	}
	if !(s.Lo <= 1 && s.Hi >= 2 && s.Lo <= s.Ratio && s.Ratio <= s.Hi) {
		t.Errorf("drift: interval %v–%v around %v, want it to span 1–2", s.Lo, s.Hi, s.Ratio)
	}

	// The same samples give the same figures (seeded resampling).
	if s2 := ratioSpread(a, b); s2 != s {
		t.Errorf("not reproducible: %+v then %+v", s, s2)
	}
	if s := ratioSpread(nil, nil); s != (spread{}) {
		t.Errorf("no samples: %+v", s)
	}
}
