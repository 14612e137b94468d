package config

import (
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"
)

// Signer configures image signing and attestations (`gantry sign`,
// `gantry attest`, the pipeline's sign stage) and the default verification
// policy of `gantry verify`. Key material is never a value here: keys and
// passwords come from files, named environment variables or a Kubernetes
// Secret.
type Signer struct {
	// KeySource says where the signing key comes from: file (keyFile),
	// env (the variable named by keyEnv), kubernetes (the Secret keySecret,
	// cosign's layout: cosign.key, cosign.password), keyless (an
	// ephemeral key certified by Fulcio for an OIDC identity), or none
	// (signing disabled).
	KeySource string `yaml:"keySource" allowed:"none,file,env,kubernetes,keyless"`
	// KeyFile is a cosign private key file (encrypted, as written by
	// `cosign generate-key-pair`).
	KeyFile string `yaml:"keyFile"`
	// KeyEnv names the environment variable that holds the PEM key.
	KeyEnv string `yaml:"keyEnv"`
	// KeySecret is the Kubernetes Secret namespace/name holding the key.
	KeySecret string `yaml:"keySecret"`
	// Kubeconfig is used to read keySecret; empty: $KUBECONFIG, then the
	// in-cluster service account.
	Kubeconfig string `yaml:"kubeconfig"`
	// PasswordFile holds the key's password. When empty, the variable
	// named by passwordEnv is read; when that is unset too, the password
	// is empty (the Secret's cosign.password is used for kubernetes).
	PasswordFile string `yaml:"passwordFile"`
	// PasswordEnv names the environment variable with the key's password.
	PasswordEnv string `yaml:"passwordEnv"`

	// FulcioURL is the certificate authority for keyless signing.
	FulcioURL string `yaml:"fulcioURL"`
	// OIDCIssuer and OIDCClientID are what the identity token is for.
	OIDCIssuer   string `yaml:"oidcIssuer"`
	OIDCClientID string `yaml:"oidcClientID"`
	// OIDCTokenFile holds the identity token for keyless signing. Empty:
	// the GitHub Actions token (ACTIONS_ID_TOKEN_REQUEST_URL), if any.
	OIDCTokenFile string `yaml:"oidcTokenFile"`

	// RekorURL is the transparency log. Empty: none (offline and
	// air-gapped setups).
	RekorURL string `yaml:"rekorURL"`
	// TlogUpload records signatures and attestations in rekorURL: auto
	// (when rekorURL is set), on (and rekorURL is required), off.
	TlogUpload string `yaml:"tlogUpload" allowed:"auto,on,off"`
	// Timeout bounds each call to Fulcio, Rekor or the Kubernetes API.
	Timeout time.Duration `yaml:"timeout"`

	// Format is how signatures and attestations are stored: legacy (the
	// default: cosign's tag-based .sig/.att, which every cosign reads
	// offline, v2 and v3 alike, v3 when the image has no bundle, and so
	// does every earlier Gantry), bundle (Sigstore bundles as OCI
	// referrers, what cosign v3 writes) or both (for verifiers that read
	// only bundles; cosign v2.6+ and v3 then read the bundle, which
	// offline needs `--trusted-root`). Verification reads both formats
	// whatever this says. See docs/signer.md.
	Format string `yaml:"format" allowed:"legacy,bundle,both"`

	// Policy is the verification policy file used by `gantry verify` when
	// --policy is not given (trusted identities, threshold, attestation
	// requirements; see docs/signer.md).
	Policy string `yaml:"policy"`
}

// DefaultSigner is the signer section's default: signing off until a key
// is configured, no transparency log unless a Rekor URL is set.
func DefaultSigner() Signer {
	return Signer{
		KeySource:    "none",
		PasswordEnv:  "COSIGN_PASSWORD",
		OIDCClientID: "sigstore",
		TlogUpload:   "auto",
		Timeout:      30 * time.Second,
		Format:       "legacy",
	}
}

// UploadsToTlog says whether signatures are recorded in the Rekor log.
func (s *Signer) UploadsToTlog() bool {
	switch s.TlogUpload {
	case "on":
		return true
	case "auto":
		return s.RekorURL != ""
	}
	return false
}

// Validate checks that the chosen key source has what it needs.
func (s *Signer) Validate() error {
	var errs []error
	need := func(v, key string) {
		if v == "" {
			errs = append(errs, fmt.Errorf("signer.%s is required when signer.keySource is %s", key, s.KeySource))
		}
	}
	switch s.KeySource {
	case "file":
		need(s.KeyFile, "keyFile")
	case "env":
		need(s.KeyEnv, "keyEnv")
	case "kubernetes":
		need(s.KeySecret, "keySecret")
		if s.KeySecret != "" {
			ns, name, ok := strings.Cut(s.KeySecret, "/")
			if !ok || ns == "" || name == "" || strings.Contains(name, "/") {
				errs = append(errs, fmt.Errorf("signer.keySecret %q must be namespace/name", s.KeySecret))
			}
		}
	case "keyless":
		need(s.FulcioURL, "fulcioURL")
		need(s.OIDCIssuer, "oidcIssuer")
	}
	for key, u := range map[string]string{"fulcioURL": s.FulcioURL, "rekorURL": s.RekorURL, "oidcIssuer": s.OIDCIssuer} {
		if u == "" {
			continue
		}
		p, err := url.Parse(u)
		if err != nil || p.Scheme != "https" && p.Scheme != "http" || p.Host == "" {
			errs = append(errs, fmt.Errorf("signer.%s %q must be an http(s) URL", key, u))
		}
	}
	if s.TlogUpload == "on" && s.RekorURL == "" {
		errs = append(errs, errors.New("signer.tlogUpload is on but signer.rekorURL is empty: set the Rekor URL, or tlogUpload: off for offline signing"))
	}
	if s.Timeout <= 0 {
		errs = append(errs, fmt.Errorf("signer.timeout must be positive, got %s", s.Timeout))
	}
	return errors.Join(errs...)
}
