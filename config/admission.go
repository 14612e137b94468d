package config

import (
	"errors"
	"fmt"
	"path"
	"regexp"
	"strings"
	"time"
)

// Admission configures the validating admission webhook (`gantry admission`)
// and its offline twin (`gantry policy check`). Defaults are the secure
// choice: enforce, restricted, signatures required, images pinned by digest.
type Admission struct {
	// Listen is the TLS address of the webhook server.
	Listen string `yaml:"listen"`
	// TLS holds the serving certificate files, reloaded when they change.
	TLS AdmissionTLS `yaml:"tls"`
	// MaxBodyBytes bounds an AdmissionReview request body.
	MaxBodyBytes int64 `yaml:"maxBodyBytes"`
	// Budget is the total time one review may spend on registry calls and
	// signature checks; past it the review is denied. Keep it below the
	// webhook's timeoutSeconds (10 s in the chart).
	Budget time.Duration `yaml:"budget"`
	// Mode is the default for every namespace: enforce (deny), warn (allow
	// with warnings) or audit (allow, log and count).
	Mode string `yaml:"mode" allowed:"enforce,warn,audit"`
	// VerifySignatures turns rule 1 (every image signed) on.
	VerifySignatures bool `yaml:"verifySignatures"`
	// RequireDigest refuses image references that are not pinned by digest
	// (a tag could point elsewhere by the time the kubelet pulls it).
	RequireDigest bool `yaml:"requireDigest"`
	// SignerPolicy is the path of the signer's verify policy (trusted keys
	// and identities) used for rule 1.
	SignerPolicy string `yaml:"signerPolicy"`
	// Cache tunes the verification and image-config caches.
	Cache AdmissionCache `yaml:"cache"`
	// PodSecurity selects the Pod Security Standards level and version.
	PodSecurity PodSecurity `yaml:"podSecurity"`
	// Namespaces overrides mode and level per namespace.
	Namespaces []AdmissionNamespace `yaml:"namespaces"`
	// Exemptions skip rules for a namespace, service account, user, group
	// or image pattern; each needs a reason and is logged when used.
	Exemptions []AdmissionExemption `yaml:"exemptions"`
	// BreakGlass lets a configured group admit a refused object for a
	// limited time with an annotation.
	BreakGlass BreakGlass `yaml:"breakGlass"`
	// Audit is the periodic report of running workloads the policy would
	// deny (`gantry admission`; `gantry policy audit` runs it once).
	Audit AdmissionAudit `yaml:"audit"`
}

// AdmissionAudit configures the audit of what already runs.
type AdmissionAudit struct {
	// Interval between passes in `gantry admission`; 0 (the default) turns
	// the periodic audit off: it needs list access to the workloads of the
	// function namespaces, which the webhook otherwise does without.
	Interval time.Duration `yaml:"interval"`
	// Namespaces to audit; empty means deploy.namespace.
	Namespaces []string `yaml:"namespaces"`
	// Selector is a label selector over the workloads (empty: all).
	Selector string `yaml:"selector"`
	// Kubeconfig is the kubeconfig file; empty: in-cluster credentials,
	// else $KUBECONFIG / ~/.kube/config.
	Kubeconfig string `yaml:"kubeconfig"`
	// RequestTimeout bounds each API server request.
	RequestTimeout time.Duration `yaml:"requestTimeout"`
}

// AdmissionTLS names the serving certificate and key files.
type AdmissionTLS struct {
	CertFile string `yaml:"certFile"`
	KeyFile  string `yaml:"keyFile"`
}

// AdmissionCache bounds the caches keyed by image digest.
type AdmissionCache struct {
	// PositiveTTL keeps a verified signature this long.
	PositiveTTL time.Duration `yaml:"positiveTTL"`
	// NegativeTTL keeps a failed verification this long, so a burst of
	// retries does not hammer the registry, yet a fix is seen soon.
	NegativeTTL time.Duration `yaml:"negativeTTL"`
	// MaxEntries bounds each cache; the oldest entries go first.
	MaxEntries int `yaml:"maxEntries"`
}

// PodSecurity selects the Pod Security Standards profile.
type PodSecurity struct {
	// Level is restricted or baseline. Privileged pods and root containers
	// are refused at either level.
	Level string `yaml:"level" allowed:"restricted,baseline"`
	// Version is the PSS version ("latest" or "v1.N").
	Version string `yaml:"version"`
}

// AdmissionNamespace overrides the mode or level of one namespace.
type AdmissionNamespace struct {
	Name  string `yaml:"name"`
	Mode  string `yaml:"mode"`
	Level string `yaml:"level"`
}

// AdmissionExemption skips rules for requests that match exactly one
// selector. Rules empty means every rule.
type AdmissionExemption struct {
	Namespace      string   `yaml:"namespace"`
	ServiceAccount string   `yaml:"serviceAccount"` // namespace/name
	User           string   `yaml:"user"`
	Group          string   `yaml:"group"`
	Image          string   `yaml:"image"` // glob over the image reference, e.g. 127.0.0.1:5000/mirror/*
	Rules          []string `yaml:"rules"` // signature, podSecurity, nonRoot
	Reason         string   `yaml:"reason"`
}

// BreakGlass configures the emergency override.
type BreakGlass struct {
	// Groups may set the annotation; empty disables break-glass.
	Groups []string `yaml:"groups"`
	// Annotation holds the expiry (RFC 3339) of the override.
	Annotation string `yaml:"annotation"`
	// MaxDuration bounds how far in the future the expiry may be.
	MaxDuration time.Duration `yaml:"maxDuration"`
	// Propagators are users (the workload controllers) trusted to copy an
	// annotated pod template into Pods and ReplicaSets: the template itself
	// was admitted only because a break-glass group member set it.
	Propagators []string `yaml:"propagators"`
}

// AdmissionRules are the rule names exemptions may list.
var AdmissionRules = []string{"signature", "podSecurity", "nonRoot"}

var psVersion = regexp.MustCompile(`^(latest|v1\.(0|[1-9][0-9]?))$`)

// DefaultAdmission is the secure default.
func DefaultAdmission() Admission {
	return Admission{
		Listen:           ":8443",
		MaxBodyBytes:     6 << 20,
		Budget:           8 * time.Second,
		Mode:             "enforce",
		VerifySignatures: true,
		RequireDigest:    true,
		Cache:            AdmissionCache{PositiveTTL: 10 * time.Minute, NegativeTTL: 30 * time.Second, MaxEntries: 10000},
		PodSecurity:      PodSecurity{Level: "restricted", Version: "latest"},
		Audit:            AdmissionAudit{RequestTimeout: 30 * time.Second},
		BreakGlass: BreakGlass{
			Annotation:  "gantry.dev/break-glass-until",
			MaxDuration: 24 * time.Hour,
			Propagators: []string{
				"system:serviceaccount:kube-system:replicaset-controller",
				"system:serviceaccount:kube-system:deployment-controller",
				"system:serviceaccount:kube-system:statefulset-controller",
				"system:serviceaccount:kube-system:daemon-set-controller",
				"system:serviceaccount:kube-system:job-controller",
				"system:serviceaccount:kube-system:cronjob-controller",
				"system:serviceaccount:kube-system:replication-controller",
			},
		},
	}
}

// Validate checks cross-field rules.
func (a *Admission) Validate() error {
	var errs []error
	if a.MaxBodyBytes < 64<<10 || a.MaxBodyBytes > 64<<20 {
		errs = append(errs, fmt.Errorf("admission.maxBodyBytes must be between 64 KiB and 64 MiB, got %d", a.MaxBodyBytes))
	}
	if a.Budget <= 0 || a.Budget >= 30*time.Second {
		errs = append(errs, fmt.Errorf("admission.budget must be positive and below the 30 s webhook timeout limit (keep it under the webhook's timeoutSeconds), got %s", a.Budget))
	}
	if (a.TLS.CertFile == "") != (a.TLS.KeyFile == "") {
		errs = append(errs, errors.New("admission.tls.certFile and admission.tls.keyFile must be set together"))
	}
	if a.Cache.PositiveTTL < 0 || a.Cache.NegativeTTL < 0 {
		errs = append(errs, errors.New("admission.cache TTLs must not be negative"))
	}
	if a.Cache.MaxEntries < 1 {
		errs = append(errs, fmt.Errorf("admission.cache.maxEntries must be at least 1, got %d", a.Cache.MaxEntries))
	}
	if !psVersion.MatchString(a.PodSecurity.Version) {
		errs = append(errs, fmt.Errorf("admission.podSecurity.version %q: use latest or v1.N (e.g. v1.37)", a.PodSecurity.Version))
	}
	seen := map[string]bool{}
	for i, ns := range a.Namespaces {
		where := fmt.Sprintf("admission.namespaces[%d]", i)
		if ns.Name == "" {
			errs = append(errs, fmt.Errorf("%s.name is required", where))
		}
		if seen[ns.Name] {
			errs = append(errs, fmt.Errorf("%s: namespace %q listed twice", where, ns.Name))
		}
		seen[ns.Name] = true
		if ns.Mode != "" && !oneOf(ns.Mode, "enforce", "warn", "audit") {
			errs = append(errs, fmt.Errorf("%s.mode %q is not allowed (allowed: enforce, warn, audit)", where, ns.Mode))
		}
		if ns.Level != "" && !oneOf(ns.Level, "restricted", "baseline") {
			errs = append(errs, fmt.Errorf("%s.level %q is not allowed (allowed: restricted, baseline; privileged is never allowed)", where, ns.Level))
		}
	}
	for i, e := range a.Exemptions {
		where := fmt.Sprintf("admission.exemptions[%d]", i)
		n := 0
		for _, s := range []string{e.Namespace, e.ServiceAccount, e.User, e.Group, e.Image} {
			if s != "" {
				n++
			}
		}
		if n != 1 {
			errs = append(errs, fmt.Errorf("%s: set exactly one of namespace, serviceAccount, user, group, image (got %d)", where, n))
		}
		if strings.TrimSpace(e.Reason) == "" {
			errs = append(errs, fmt.Errorf("%s.reason is required: say why this exemption exists", where))
		}
		if e.ServiceAccount != "" {
			if ns, name, ok := strings.Cut(e.ServiceAccount, "/"); !ok || ns == "" || name == "" {
				errs = append(errs, fmt.Errorf("%s.serviceAccount %q must be namespace/name", where, e.ServiceAccount))
			}
		}
		if e.Image != "" {
			if _, err := path.Match(e.Image, ""); err != nil {
				errs = append(errs, fmt.Errorf("%s.image %q is not a valid pattern: %v", where, e.Image, err))
			}
			if e.Image == "*" || e.Image == "**" {
				errs = append(errs, fmt.Errorf("%s.image %q would exempt every image; exempt a namespace instead", where, e.Image))
			}
		}
		for _, r := range e.Rules {
			if !oneOf(r, AdmissionRules...) {
				errs = append(errs, fmt.Errorf("%s.rules: %q is not a rule (allowed: %s)", where, r, strings.Join(AdmissionRules, ", ")))
			}
		}
	}
	if a.Audit.Interval != 0 && a.Audit.Interval < 10*time.Second {
		errs = append(errs, fmt.Errorf("admission.audit.interval must be 0 (off) or at least 10s, got %s", a.Audit.Interval))
	}
	if a.Audit.RequestTimeout <= 0 {
		errs = append(errs, fmt.Errorf("admission.audit.requestTimeout must be positive, got %s", a.Audit.RequestTimeout))
	}
	if len(a.BreakGlass.Groups) > 0 {
		if a.BreakGlass.Annotation == "" {
			errs = append(errs, errors.New("admission.breakGlass.annotation is required when groups are set"))
		}
		if a.BreakGlass.MaxDuration <= 0 {
			errs = append(errs, errors.New("admission.breakGlass.maxDuration must be positive"))
		}
	}
	return errors.Join(errs...)
}

func oneOf(s string, allowed ...string) bool {
	for _, a := range allowed {
		if s == a {
			return true
		}
	}
	return false
}
