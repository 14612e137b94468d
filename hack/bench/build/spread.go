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
	// Paired is the median of the per-round ratios a[i]/b[i]: the two ran
	// back to back, so load that comes and goes touches both; PLo and PHi
	// bound its central 90% over the same resamples.
	Paired, PLo, PHi float64
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
	per := make([]float64, n)
	for i := range n {
		if b[i] > 0 {
			per[i] = float64(a[i]) / float64(b[i])
		}
	}
	s.Paired = median(per)
	ra, rb := make([]time.Duration, n), make([]time.Duration, n)
	rp := make([]float64, n)
	ratios := make([]float64, bootstrapResamples)
	paired := make([]float64, bootstrapResamples)
	for i := range ratios {
		for j := range n {
			k := rng.IntN(n)
			ra[j], rb[j], rp[j] = a[k], b[k], per[k]
		}
		ratios[i] = ratioOfMedians(ra, rb)
		paired[i] = median(rp)
	}
	slices.Sort(ratios)
	slices.Sort(paired)
	lo, hi := bootstrapResamples*5/100, bootstrapResamples*95/100-1
	s.Lo, s.Hi = ratios[lo], ratios[hi]
	s.PLo, s.PHi = paired[lo], paired[hi]
	return s
}

func ratioOfMedians(a, b []time.Duration) float64 {
	mb := median(b)
	if mb == 0 {
		return 0
	}
	return float64(median(a)) / float64(mb)
}

// median of xs (the mean of the two middle values for an even count):
// durations and ratios alike.
func median[T time.Duration | float64](xs []T) T {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	m := len(s) / 2
	if len(s)%2 == 0 {
		return (s[m-1] + s[m]) / 2
	}
	return s[m]
}
