package config

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
)

// ServerTLS names the serving certificate and key files of `gantry serve`.
// Both are re-read when they change (cert-manager or a kubelet Secret
// update rotates them in place), without a restart.
type ServerTLS struct {
	CertFile string `yaml:"certFile"`
	KeyFile  string `yaml:"keyFile"`
}

// RateLimit is a token bucket: Rate requests per second on average and
// Burst at once. Rate 0 turns the limit off.
type RateLimit struct {
	Rate  float64 `yaml:"rate"`
	Burst int     `yaml:"burst"`
}

// RateLimits are the request limits of `gantry serve` (server.rateLimits).
// A request over a limit gets 429 with Retry-After.
type RateLimits struct {
	// WebhookPerSource limits POST /webhooks/github per client address,
	// before the signature is checked.
	WebhookPerSource RateLimit `yaml:"webhookPerSource"`
	// WebhookPerRepo limits verified push deliveries per repository.
	WebhookPerRepo RateLimit `yaml:"webhookPerRepo"`
	// APIPerToken limits API and dashboard requests per authenticated
	// caller (token or OIDC subject).
	APIPerToken RateLimit `yaml:"apiPerToken"`
	// FailedAuthPerSource is the budget of failed authentications (bad
	// webhook signature, bad or missing token) per client address; a
	// source that spends it gets 429 until the bucket refills, before
	// any signature or token is checked.
	FailedAuthPerSource RateLimit `yaml:"failedAuthPerSource"`
	// MaxTrackedKeys bounds the memory of each limiter (addresses, repos,
	// tokens tracked at once); beyond it new keys share one bucket.
	MaxTrackedKeys int `yaml:"maxTrackedKeys"`
	// TrustedProxies are addresses or CIDRs (an ingress controller) whose
	// X-Forwarded-For header names the client. Empty: the TCP peer is
	// the client, and X-Forwarded-For is ignored.
	TrustedProxies []string `yaml:"trustedProxies"`
}

// DefaultRateLimits allows GitHub's bursts (a push to many branches, a
// redelivery storm) and an interactive dashboard, and throttles floods.
func DefaultRateLimits() RateLimits {
	return RateLimits{
		WebhookPerSource:    RateLimit{Rate: 50, Burst: 200},
		WebhookPerRepo:      RateLimit{Rate: 10, Burst: 60},
		APIPerToken:         RateLimit{Rate: 20, Burst: 100},
		FailedAuthPerSource: RateLimit{Rate: 1, Burst: 20},
		MaxTrackedKeys:      100000,
	}
}

func (l RateLimit) validate(key string) error {
	if l.Rate < 0 || l.Rate > 1e6 {
		return fmt.Errorf("%s.rate must be 0 (off) to 1000000 per second, got %v", key, l.Rate)
	}
	if l.Rate > 0 && (l.Burst < 1 || l.Burst > 1e6) {
		return fmt.Errorf("%s.burst must be 1..1000000 when a rate is set, got %d", key, l.Burst)
	}
	return nil
}

// ParsePrefixes parses addresses and CIDRs (server.rateLimits.trustedProxies).
func ParsePrefixes(list []string) ([]netip.Prefix, error) {
	out := make([]netip.Prefix, 0, len(list))
	for _, s := range list {
		s = strings.TrimSpace(s)
		if p, err := netip.ParsePrefix(s); err == nil {
			out = append(out, p.Masked())
			continue
		}
		a, err := netip.ParseAddr(s)
		if err != nil {
			return nil, fmt.Errorf("%q is neither an address nor a CIDR", s)
		}
		out = append(out, netip.PrefixFrom(a, a.BitLen()))
	}
	return out, nil
}

// validateSecurity checks the TLS, header and rate limit keys of server.
func (s *Server) validateSecurity() error {
	var errs []error
	if (s.TLS.CertFile == "") != (s.TLS.KeyFile == "") {
		errs = append(errs, errors.New("server.tls.certFile and server.tls.keyFile must be set together"))
	}
	if s.TLS.CertFile != "" && s.InsecureHTTP {
		errs = append(errs, errors.New("server.insecureHTTP and server.tls.certFile exclude each other: choose TLS or plain HTTP behind a TLS proxy"))
	}
	if s.MaxHeaderBytes < 4<<10 || s.MaxHeaderBytes > 1<<20 {
		errs = append(errs, fmt.Errorf("server.maxHeaderBytes must be 4096..1048576, got %d", s.MaxHeaderBytes))
	}
	rl := s.RateLimits
	for key, l := range map[string]RateLimit{
		"webhookPerSource": rl.WebhookPerSource, "webhookPerRepo": rl.WebhookPerRepo,
		"apiPerToken": rl.APIPerToken, "failedAuthPerSource": rl.FailedAuthPerSource,
	} {
		if err := l.validate("server.rateLimits." + key); err != nil {
			errs = append(errs, err)
		}
	}
	if rl.MaxTrackedKeys < 1 {
		errs = append(errs, fmt.Errorf("server.rateLimits.maxTrackedKeys must be at least 1, got %d", rl.MaxTrackedKeys))
	}
	if _, err := ParsePrefixes(rl.TrustedProxies); err != nil {
		errs = append(errs, fmt.Errorf("server.rateLimits.trustedProxies: %w", err))
	}
	return errors.Join(errs...)
}
