package main

import (
	"math/rand/v2"
	"slices"
	"time"
)

// spread is how far a ratio of medians can be trusted: the ratio itself,
// a bootstrap interval of it, and the ratio over each half of the rounds.
type spread struct {
	// Ratio is median(a) / median(b) over all rounds.
	Ratio float64
	// Lo and Hi bound the central 90% of the ratio of medians over
	// rounds resampled with replacement (a paired bootstrap: a round's
	// two samples are always drawn together, as they ran side by side).
	Lo, Hi float64
	// First and Second are the ratio of medians over the first and the
	// second half of the rounds: drift during the run shows as a gap.
	First, Second float64
}

// bootstrapResamples is how many resamples the interval is drawn from.
const bootstrapResamples = 2000

// ratioSpread compares a with b, two series of the same length whose i-th
// samples were taken in the same round. The resampling is seeded by the
// data's length, so a run's figures can be recomputed from its samples.
func ratioSpread(a, b []time.Duration) spread {
	n := min(len(a), len(b))
	if n == 0 {
		return spread{}
	}
	a, b = a[:n], b[:n]
	s := spread{Ratio: ratioOfMedians(a, b)}
	s.First, s.Second = s.Ratio, s.Ratio
	if h := n / 2; h >= 1 && n-h >= 1 {
		s.First, s.Second = ratioOfMedians(a[:h], b[:h]), ratioOfMedians(a[h:], b[h:])
	}
	rng := rand.New(rand.NewPCG(uint64(n), 0x6a6e7472795f6263))
	ra, rb := make([]time.Duration, n), make([]time.Duration, n)
	ratios := make([]float64, bootstrapResamples)
	for i := range ratios {
		for j := range n {
			k := rng.IntN(n)
			ra[j], rb[j] = a[k], b[k]
		}
		ratios[i] = ratioOfMedians(ra, rb)
	}
	slices.Sort(ratios)
	s.Lo = ratios[bootstrapResamples*5/100]
	s.Hi = ratios[bootstrapResamples*95/100-1]
	return s
}

func ratioOfMedians(a, b []time.Duration) float64 {
	mb := median(b)
	if mb == 0 {
		return 0
	}
	return float64(median(a)) / float64(mb)
}

// median of ds (the mean of the two middle values for an even count).
func median(ds []time.Duration) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	m := len(s) / 2
	if len(s)%2 == 0 {
		return (s[m-1] + s[m]) / 2
	}
	return s[m]
}
