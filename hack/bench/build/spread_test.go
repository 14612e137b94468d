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
	if s := ratioSpread(a, b); !near(s.Ratio, 1.1) || !near(s.Lo, 1.1) || !near(s.Hi, 1.1) {
		t.Errorf("a = 1.1 b: %+v, want ratio and interval 1.1", s)
	}

	// Drift: a matches b in the first half and is twice as slow in the
	// second; the halves show it and the interval is wide.
	b = ms(100, 100, 100, 100, 100, 100)
	a = ms(100, 100, 100, 200, 200, 200)
	s := ratioSpread(a, b)
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
