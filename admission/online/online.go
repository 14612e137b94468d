// Package online wires the admission evaluator to the world it reads: the
// registry (tags resolved, image configs read for root detection) and the
// signer's verifier behind the verification cache. It is kept apart from
// package admission so that what evaluates a manifest offline (`gantry
// policy check --offline`) links neither the registry client's verifier
// nor cosign: a command's start-up pays for the packages it links.
package online

import (
	"fmt"
	"log/slog"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/gantry-dev/gantry/admission"
	"github.com/gantry-dev/gantry/admission/images"
	"github.com/gantry-dev/gantry/admission/verification"
	"github.com/gantry-dev/gantry/audit"
	"github.com/gantry-dev/gantry/config"
	"github.com/gantry-dev/gantry/internal/oci"
	"github.com/gantry-dev/gantry/signer"
)

// Options say what Build attaches to the evaluator besides the registry.
type Options struct {
	Log *slog.Logger
	// Registerer receives the metrics (nil: none).
	Registerer prometheus.Registerer
	// Audit receives exemption and break-glass records (nil: none).
	Audit audit.Sink
}

// Build wires an Evaluator from the configuration: the registry client,
// the image inspector, and the signer's verifier behind the verification
// cache. Without admission.signerPolicy, signature checks fail closed.
func Build(cfg *config.Config, o Options) (*admission.Evaluator, error) {
	ac := cfg.Admission
	opts := admission.Options{Log: o.Log, Metrics: admission.NewMetrics(), Audit: o.Audit}
	if o.Registerer != nil {
		o.Registerer.MustRegister(newMetricsCollector(opts.Metrics))
	}
	reg, err := oci.New(cfg.Registry)
	if err != nil {
		return nil, err
	}
	opts.Registry = reg
	ins := images.New(reg, images.Options{MaxEntries: ac.Cache.MaxEntries, TagTTL: ac.Cache.NegativeTTL})
	opts.Images = ins
	if o.Registerer != nil {
		o.Registerer.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "gantry_admission_image_registry_calls_total",
			Help: "Registry requests made to resolve tags and read image configs (zero on the warm path).",
		}, func() float64 { return float64(ins.RegistryCalls()) }))
	}
	if ac.VerifySignatures && ac.SignerPolicy != "" {
		p, err := signer.LoadPolicy(ac.SignerPolicy)
		if err != nil {
			return nil, fmt.Errorf("admission.signerPolicy: %w", err)
		}
		v, err := signer.NewVerifier(p, reg)
		if err != nil {
			return nil, fmt.Errorf("admission.signerPolicy: %w", err)
		}
		vc := verification.NewCache(signerVerifier{v}, verification.Options{
			PositiveTTL: ac.Cache.PositiveTTL, NegativeTTL: ac.Cache.NegativeTTL, MaxEntries: ac.Cache.MaxEntries})
		opts.Verifier = vc
		if o.Registerer != nil {
			for _, c := range []struct {
				result string
				get    func() float64
			}{
				{"hit", func() float64 { h, _ := vc.Stats(); return float64(h) }},
				{"miss", func() float64 { _, m := vc.Stats(); return float64(m) }},
			} {
				o.Registerer.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{
					Name: "gantry_admission_verify_cache_total", Help: "Signature verification cache lookups, by result.",
					ConstLabels: prometheus.Labels{"result": c.result},
				}, c.get))
			}
		}
	}
	return admission.New(ac, opts)
}
