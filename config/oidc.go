package config

import (
	"errors"
	"fmt"
	"time"
)

// OIDC lets the API and dashboard accept ID tokens (JWTs) of one OpenID
// Connect issuer beside Gantry's own tokens (api.oidc). Off while Issuer
// is empty.
type OIDC struct {
	// Issuer must equal the tokens' iss claim exactly.
	Issuer string `yaml:"issuer"`
	// Audience must be among the tokens' aud values (the client id).
	Audience string `yaml:"audience"`
	// JWKSURL (https) or JWKSFile holds the issuer's public keys; set one.
	JWKSURL  string `yaml:"jwksURL"`
	JWKSFile string `yaml:"jwksFile"`
	// CAFile verifies JWKSURL's certificate (empty: system roots).
	CAFile string `yaml:"caFile"`
	// Algorithms allowed (default RS256, ES256); asymmetric ones only.
	Algorithms []string `yaml:"algorithms"`
	// SubjectClaim names the caller (default sub); GroupsClaim holds the
	// groups mapped to scopes (default groups).
	SubjectClaim string `yaml:"subjectClaim"`
	GroupsClaim  string `yaml:"groupsClaim"`
	// Groups map a group to scopes (runs:read, runs:write, admin). A token
	// whose groups map to no scope is refused.
	Groups []OIDCGroup `yaml:"groups"`
	// Leeway tolerates clock skew on exp/nbf/iat.
	Leeway time.Duration `yaml:"leeway"`
}

// OIDCGroup grants Scopes to members of Group.
type OIDCGroup struct {
	Group  string   `yaml:"group"`
	Scopes []string `yaml:"scopes"`
}

// DefaultOIDC is off.
func DefaultOIDC() OIDC { return OIDC{Leeway: time.Minute} }

// Enabled reports whether an issuer is configured.
func (o *OIDC) Enabled() bool { return o.Issuer != "" }

func (o *OIDC) validate() error {
	if !o.Enabled() {
		return nil
	}
	var errs []error
	if o.Audience == "" {
		errs = append(errs, errors.New("api.oidc.audience is required with api.oidc.issuer"))
	}
	if (o.JWKSURL == "") == (o.JWKSFile == "") {
		errs = append(errs, errors.New("api.oidc: set exactly one of jwksURL and jwksFile"))
	}
	if len(o.Groups) == 0 {
		errs = append(errs, errors.New("api.oidc.groups maps no group to a scope: every token would be refused"))
	}
	for i, g := range o.Groups {
		if g.Group == "" || len(g.Scopes) == 0 {
			errs = append(errs, fmt.Errorf("api.oidc.groups[%d]: a group and at least one scope are required", i))
		}
		for _, s := range g.Scopes {
			if s != "runs:read" && s != "runs:write" && s != "admin" {
				errs = append(errs, fmt.Errorf("api.oidc.groups[%d].scopes: %q is not a scope (runs:read, runs:write, admin)", i, s))
			}
		}
	}
	if o.Leeway < 0 || o.Leeway > 10*time.Minute {
		errs = append(errs, fmt.Errorf("api.oidc.leeway must be 0..10m, got %s", o.Leeway))
	}
	return errors.Join(errs...)
}
