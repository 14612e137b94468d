package config

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
	"time"
)

// Notify configures where run results are reported: GitHub commit statuses
// and a check run, a Slack-compatible incoming webhook, and a signed
// CloudEvents sink. A failed notification is recorded on the run, never
// fatal to it.
type Notify struct {
	// When says which runs go to the chat and CloudEvents sinks: failure
	// (failed or errored runs) or always. GitHub statuses are always set.
	When string `yaml:"when" allowed:"failure,always"`
	// Timeout bounds each delivery attempt.
	Timeout time.Duration `yaml:"timeout"`
	// Attempts is the number of tries per delivery (1 = no retry).
	Attempts int `yaml:"attempts"`
	// Backoff is the wait before the first retry; it doubles (with
	// jitter) up to MaxBackoff.
	Backoff    time.Duration `yaml:"backoff"`
	MaxBackoff time.Duration `yaml:"maxBackoff"`
	// TopFindings is how many findings a chat message or event lists.
	TopFindings int `yaml:"topFindings"`
	// GitHub reports commit statuses and a check run.
	GitHub NotifyGitHub `yaml:"github"`
	// Slack posts to a Slack-compatible incoming webhook.
	Slack NotifySlack `yaml:"slack"`
	// CloudEvents posts signed CloudEvents (structured mode, JSON).
	CloudEvents NotifyCloudEvents `yaml:"cloudEvents"`
}

// NotifyGitHub authenticates to GitHub's REST API. Set either TokenFile
// (commit statuses only) or AppID + PrivateKeyFile (statuses and a check
// run with annotations). Neither: GitHub is not notified.
type NotifyGitHub struct {
	// APIURL is the REST API root: https://api.github.com/ or, for GitHub
	// Enterprise Server, https://HOST/api/v3/.
	APIURL string `yaml:"apiURL"`
	// TokenFile holds a token allowed to write commit statuses.
	TokenFile string `yaml:"tokenFile"`
	// AppID is the GitHub App's id.
	AppID int64 `yaml:"appID"`
	// InstallationID is the App's installation; 0 looks it up per repository.
	InstallationID int64 `yaml:"installationID"`
	// PrivateKeyFile holds the App's PEM private key.
	PrivateKeyFile string `yaml:"privateKeyFile"`
	// StatusContext prefixes each function's commit status context
	// (gantry/<function>).
	StatusContext string `yaml:"statusContext"`
	// CheckRunName names the overall check run.
	CheckRunName string `yaml:"checkRunName"`
}

// NotifySlack configures the chat webhook.
type NotifySlack struct {
	// WebhookURLFile holds the incoming-webhook URL (the URL is the secret).
	WebhookURLFile string `yaml:"webhookURLFile"`
}

// NotifyCloudEvents configures the CloudEvents-over-HTTP sink.
type NotifyCloudEvents struct {
	// URL receives the events. Empty: disabled.
	URL string `yaml:"url"`
	// SecretFile holds the HMAC-SHA256 key; every event is signed.
	SecretFile string `yaml:"secretFile"`
	// Source is the CloudEvents source attribute (a URI reference).
	Source string `yaml:"source"`
}

// DefaultNotify returns the notify section's defaults.
func DefaultNotify() Notify {
	return Notify{
		When:        "failure",
		Timeout:     10 * time.Second,
		Attempts:    4,
		Backoff:     500 * time.Millisecond,
		MaxBackoff:  10 * time.Second,
		TopFindings: 5,
		GitHub: NotifyGitHub{
			APIURL:        "https://api.github.com/",
			StatusContext: "gantry",
			CheckRunName:  "gantry",
		},
		CloudEvents: NotifyCloudEvents{Source: "gantry"},
	}
}

// Validate checks cross-field rules.
func (n *Notify) Validate() error {
	var errs []error
	if n.Timeout <= 0 {
		errs = append(errs, fmt.Errorf("notify.timeout must be positive, got %s", n.Timeout))
	}
	if n.Attempts < 1 || n.Attempts > 10 {
		errs = append(errs, fmt.Errorf("notify.attempts must be between 1 and 10, got %d", n.Attempts))
	}
	if n.Backoff <= 0 || n.MaxBackoff < n.Backoff {
		errs = append(errs, fmt.Errorf("notify.backoff must be positive and notify.maxBackoff at least as long (got %s, %s)", n.Backoff, n.MaxBackoff))
	}
	if n.TopFindings < 0 || n.TopFindings > 50 {
		errs = append(errs, fmt.Errorf("notify.topFindings must be between 0 and 50, got %d", n.TopFindings))
	}
	g := n.GitHub
	if err := checkEndpoint("notify.github.apiURL", g.APIURL); err != nil {
		errs = append(errs, err)
	}
	if g.TokenFile != "" && g.AppID != 0 {
		errs = append(errs, errors.New("notify.github: set either tokenFile or appID + privateKeyFile, not both"))
	}
	if (g.AppID != 0) != (g.PrivateKeyFile != "") {
		errs = append(errs, errors.New("notify.github.appID and notify.github.privateKeyFile must be set together"))
	}
	if g.AppID < 0 || g.InstallationID < 0 {
		errs = append(errs, errors.New("notify.github.appID and installationID must not be negative"))
	}
	if g.InstallationID != 0 && g.AppID == 0 {
		errs = append(errs, errors.New("notify.github.installationID needs notify.github.appID"))
	}
	if strings.TrimSpace(g.StatusContext) == "" || strings.TrimSpace(g.CheckRunName) == "" {
		errs = append(errs, errors.New("notify.github.statusContext and checkRunName must not be empty"))
	}
	c := n.CloudEvents
	if c.URL != "" {
		if err := checkEndpoint("notify.cloudEvents.url", c.URL); err != nil {
			errs = append(errs, err)
		}
		if c.SecretFile == "" {
			errs = append(errs, errors.New("notify.cloudEvents.secretFile is required with url: every event is signed"))
		}
		if c.Source == "" {
			errs = append(errs, errors.New("notify.cloudEvents.source must not be empty"))
		}
	}
	return errors.Join(errs...)
}

// checkEndpoint accepts https URLs, and plain http only to loopback (local
// sinks and test servers): notifications carry run details and signatures
// that must not cross a network in clear text.
func checkEndpoint(key, raw string) error {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		return fmt.Errorf("%s %q must be an absolute http(s) URL", key, raw)
	}
	if u.User != nil {
		return fmt.Errorf("%s must not carry credentials in the URL", key)
	}
	switch u.Scheme {
	case "https":
		return nil
	case "http":
		host := u.Hostname()
		if ip := net.ParseIP(host); (ip != nil && ip.IsLoopback()) || host == "localhost" {
			return nil
		}
		return fmt.Errorf("%s %q: plain http is allowed only to loopback; use https", key, raw)
	}
	return fmt.Errorf("%s %q must use https", key, raw)
}
