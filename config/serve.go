package config

import (
	"errors"
	"fmt"
	"net"
	"path"
	"strings"
	"time"
)

// Server configures the HTTP server of `gantry serve`: the GitHub webhook
// receiver, the runs API, health and metrics, on one listener.
type Server struct {
	// Listen is the host:port to listen on.
	Listen string `yaml:"listen"`
	// ReadHeaderTimeout, ReadTimeout, WriteTimeout and IdleTimeout bound
	// each connection (slow clients cannot hold the server).
	ReadHeaderTimeout time.Duration `yaml:"readHeaderTimeout"`
	ReadTimeout       time.Duration `yaml:"readTimeout"`
	WriteTimeout      time.Duration `yaml:"writeTimeout"`
	IdleTimeout       time.Duration `yaml:"idleTimeout"`
	// ShutdownTimeout bounds draining in-flight requests on SIGTERM.
	ShutdownTimeout time.Duration `yaml:"shutdownTimeout"`
	// TLS, InsecureHTTP, MaxHeaderBytes, RateLimits: see config/security.go.
	TLS            ServerTLS  `yaml:"tls"`
	InsecureHTTP   bool       `yaml:"insecureHTTP"`
	MaxHeaderBytes int        `yaml:"maxHeaderBytes"`
	RateLimits     RateLimits `yaml:"rateLimits"`
	// RunWorkers runs pipeline workers in the serve process; false makes
	// it a receiver only, with `gantry worker` (and its deploy
	// permissions) in other pods.
	RunWorkers bool `yaml:"runWorkers"`
	// MetricsListen (host:port) serves /metrics, /healthz and /readyz on
	// a listener of their own, with server.tls; empty: no metrics. The
	// main listener (webhooks, API, dashboard) never serves /metrics.
	MetricsListen string `yaml:"metricsListen"`
}

// DefaultServer returns the server defaults.
func DefaultServer() Server {
	return Server{
		Listen: "127.0.0.1:8080", ReadHeaderTimeout: 5 * time.Second, ReadTimeout: 30 * time.Second,
		WriteTimeout: 30 * time.Second, IdleTimeout: 120 * time.Second, ShutdownTimeout: 30 * time.Second,
		MaxHeaderBytes: 64 << 10, RateLimits: DefaultRateLimits(), RunWorkers: true,
	}
}

// Validate checks the listen address and that every timeout is positive.
func (s *Server) Validate() error {
	if _, _, err := net.SplitHostPort(s.Listen); err != nil {
		return fmt.Errorf("server.listen %q: want host:port (%v)", s.Listen, err)
	}
	if err := s.validateMetricsListen(); err != nil {
		return err
	}
	for name, d := range map[string]time.Duration{
		"readHeaderTimeout": s.ReadHeaderTimeout, "readTimeout": s.ReadTimeout, "writeTimeout": s.WriteTimeout,
		"idleTimeout": s.IdleTimeout, "shutdownTimeout": s.ShutdownTimeout,
	} {
		if d <= 0 {
			return fmt.Errorf("server.%s must be positive, got %s", name, d)
		}
	}
	return s.validateSecurity()
}

// Webhooks configures the GitHub webhook receiver (POST /webhooks/github).
type Webhooks struct {
	// GitHubSecretFiles are files holding one webhook secret each. Several
	// are accepted at once (rotation without downtime).
	GitHubSecretFiles []string `yaml:"githubSecretFiles"`
	// GitHubSecretEnv names environment variables holding webhook secrets
	// (the names, never the secrets).
	GitHubSecretEnv []string `yaml:"githubSecretEnv"`
	// EnqueueTimeout bounds queueing one run (GitHub waits 10 s).
	EnqueueTimeout time.Duration `yaml:"enqueueTimeout"`
	// Repos lists the repositories, branches and tags whose pushes start
	// runs; every other push is answered "ignored".
	Repos []WebhookRepo `yaml:"repos"`
	// MaxQueuedPerRepo bounds the queued (not yet started) runs of one
	// repository; a push beyond it is refused with 503 (GitHub can
	// redeliver it) and counted. 0: no bound.
	MaxQueuedPerRepo int `yaml:"maxQueuedPerRepo"`
	// GitHubHost is the host of the only clone URLs workers fetch:
	// https://<githubHost>/<owner>/<name>[.git] of an allowed repository
	// (default github.com; a GitHub Enterprise host otherwise).
	GitHubHost string `yaml:"githubHost"`
}

// WebhookRepo allows pushes of one repository.
type WebhookRepo struct {
	// Name is owner/name.
	Name string `yaml:"name"`
	// Branches are glob patterns (main, release/*); default [main].
	Branches []string `yaml:"branches"`
	// Tags are glob patterns (v*); default none.
	Tags []string `yaml:"tags"`
}

// DefaultWebhooks returns the receiver defaults.
func DefaultWebhooks() Webhooks {
	return Webhooks{EnqueueTimeout: 5 * time.Second, MaxQueuedPerRepo: 50, GitHubHost: "github.com"}
}

// Validate checks repo names and patterns.
func (w *Webhooks) Validate() error {
	if w.EnqueueTimeout <= 0 || w.EnqueueTimeout > 9*time.Second {
		return fmt.Errorf("webhooks.enqueueTimeout must be between 0 and 9s (GitHub gives up after 10s), got %s", w.EnqueueTimeout)
	}
	if w.MaxQueuedPerRepo < 0 {
		return fmt.Errorf("webhooks.maxQueuedPerRepo must be 0 (no bound) or more, got %d", w.MaxQueuedPerRepo)
	}
	if h := w.GitHubHost; h == "" || strings.ContainsAny(h, "/:@?#") {
		return fmt.Errorf("webhooks.githubHost %q: want a host name such as github.com", h)
	}
	seen := map[string]bool{}
	for i := range w.Repos {
		r := &w.Repos[i]
		owner, name, ok := strings.Cut(r.Name, "/")
		if !ok || owner == "" || name == "" || strings.Contains(name, "/") {
			return fmt.Errorf("webhooks.repos[%d].name %q: want owner/name", i, r.Name)
		}
		if seen[strings.ToLower(r.Name)] {
			return fmt.Errorf("webhooks.repos: %s listed twice", r.Name)
		}
		seen[strings.ToLower(r.Name)] = true
		if r.Branches == nil {
			r.Branches = []string{"main"}
		}
		for _, p := range append(append([]string(nil), r.Branches...), r.Tags...) {
			if _, err := path.Match(p, ""); err != nil || p == "" {
				return fmt.Errorf("webhooks.repos %s: pattern %q is not a valid glob", r.Name, p)
			}
		}
	}
	return nil
}

// Queue configures the durable run queue, run records and workers (NATS
// JetStream: embedded on DataDir, or external at NATSURL).
type Queue struct {
	// DataDir holds the embedded NATS server's JetStream store.
	DataDir string `yaml:"dataDir"`
	// NATSURL names an external NATS server or cluster (comma-separated
	// URLs); empty runs the embedded server.
	NATSURL string `yaml:"natsURL"`
	// CredsFile is a NATS credentials file (JWT + seed) for NATSURL.
	CredsFile string `yaml:"credsFile"`
	// TokenFile holds a NATS token: sent to NATSURL, or required by the
	// embedded server when EmbeddedListen is set.
	TokenFile string `yaml:"tokenFile"`
	// TLSCAFile, TLSCertFile, TLSKeyFile: CA and client certificate for NATSURL.
	TLSCAFile   string `yaml:"tlsCAFile"`
	TLSCertFile string `yaml:"tlsCertFile"`
	TLSKeyFile  string `yaml:"tlsKeyFile"`
	// EmbeddedListen (host:port) opens the embedded server to `gantry
	// worker` processes; empty: in-process only. Needs TokenFile.
	EmbeddedListen string `yaml:"embeddedListen"`
	// SyncAlways fsyncs every write of the embedded server (survives power
	// loss, slower). A killed process loses nothing either way.
	SyncAlways bool `yaml:"syncAlways"`
	// Replicas of every stream and bucket (3 on a JetStream cluster).
	Replicas int `yaml:"replicas"`
	// Timeout bounds connecting and each queue request.
	Timeout time.Duration `yaml:"timeout"`
	// DeliveryTTL is how long a GitHub delivery id is remembered (replay guard).
	DeliveryTTL time.Duration `yaml:"deliveryTTL"`
	// RunRetention is how long run records and logs are kept.
	RunRetention time.Duration `yaml:"runRetention"`
	// Workers is how many runs one process executes at once.
	Workers int `yaml:"workers"`
	// AckWait: a worker silent this long loses its run to another worker
	// (heartbeats are sent every third of it).
	AckWait time.Duration `yaml:"ackWait"`
	// MaxDeliver: a run executed this many times (leases taken, not
	// deliveries) without finishing is dead-lettered (state error).
	MaxDeliver int `yaml:"maxDeliver"`
	// RetryDelay is the pause before retrying a run after a transient error.
	RetryDelay time.Duration `yaml:"retryDelay"`
	// CancelSuperseded: a run of a newer commit (one that descends from
	// the other's, by git ancestry, decided at checkout) of the same repo
	// and ref cancels the older run if it is still queued or running.
	CancelSuperseded bool `yaml:"cancelSuperseded"`
	// SealKeyFile is the receiver's Ed25519 private key (PEM, PKCS #8)
	// sealing every run it queues. Empty: gantry serve keeps one in
	// DataDir (seal.key, with seal.pub beside it for workers).
	SealKeyFile string `yaml:"sealKeyFile"`
	// SealPublicKeyFiles are the public keys (PEM) workers verify seals
	// with; several for rotation. Required by gantry worker.
	SealPublicKeyFiles []string `yaml:"sealPublicKeyFiles"`
	// Provisioned: the streams and buckets on NATSURL were created by
	// `gantry queue setup` (with an admin NATS user); serve and worker
	// only look them up, so their NATS users need no stream management
	// permission. See docs/queue.md.
	Provisioned bool `yaml:"provisioned"`
	// InboxPrefix replaces _INBOX for this process's reply subjects, so
	// that its NATS user may subscribe to its own replies only (the chart
	// sets _INBOX.receiver and _INBOX.worker). Empty: _INBOX.
	InboxPrefix string `yaml:"inboxPrefix"`
}

// DefaultQueue returns the queue defaults.
func DefaultQueue() Queue {
	return Queue{
		DataDir: "/var/lib/gantry", Replicas: 1, Timeout: 10 * time.Second,
		DeliveryTTL: 7 * 24 * time.Hour, RunRetention: 30 * 24 * time.Hour,
		Workers: 2, AckWait: time.Minute, MaxDeliver: 5, RetryDelay: 30 * time.Second,
		CancelSuperseded: true,
	}
}

// Validate checks the queue settings.
func (q *Queue) Validate() error {
	var errs []error
	if q.NATSURL == "" && q.DataDir == "" {
		errs = append(errs, errors.New("queue.dataDir is required for the embedded NATS server (or set queue.natsURL)"))
	}
	if q.EmbeddedListen != "" {
		if _, _, err := net.SplitHostPort(q.EmbeddedListen); err != nil {
			errs = append(errs, fmt.Errorf("queue.embeddedListen %q: want host:port", q.EmbeddedListen))
		}
		if q.TokenFile == "" {
			errs = append(errs, errors.New("queue.embeddedListen needs queue.tokenFile (an open NATS port must require auth)"))
		}
	}
	if q.Provisioned && q.NATSURL == "" {
		errs = append(errs, errors.New("queue.provisioned needs queue.natsURL (the embedded server is set up by the process itself)"))
	}
	if p := q.InboxPrefix; p != "" && (strings.ContainsAny(p, "*> \t\r\n") || strings.HasPrefix(p, ".") || strings.HasSuffix(p, ".") || strings.Contains(p, "..")) {
		errs = append(errs, fmt.Errorf("queue.inboxPrefix %q: want subject tokens without wildcards, like _INBOX.worker", p))
	}
	if (q.TLSCertFile == "") != (q.TLSKeyFile == "") {
		errs = append(errs, errors.New("queue.tlsCertFile and queue.tlsKeyFile go together"))
	}
	if q.Replicas < 1 || q.Replicas > 5 {
		errs = append(errs, fmt.Errorf("queue.replicas must be 1..5, got %d", q.Replicas))
	}
	if q.Workers < 1 || q.Workers > 256 {
		errs = append(errs, fmt.Errorf("queue.workers must be 1..256, got %d", q.Workers))
	}
	if q.MaxDeliver < 1 {
		errs = append(errs, fmt.Errorf("queue.maxDeliver must be at least 1, got %d", q.MaxDeliver))
	}
	if q.AckWait < time.Second {
		errs = append(errs, fmt.Errorf("queue.ackWait must be at least 1s, got %s", q.AckWait))
	}
	for name, d := range map[string]time.Duration{"timeout": q.Timeout, "deliveryTTL": q.DeliveryTTL, "runRetention": q.RunRetention, "retryDelay": q.RetryDelay} {
		if d <= 0 {
			errs = append(errs, fmt.Errorf("queue.%s must be positive, got %s", name, d))
		}
	}
	if q.DeliveryTTL > 0 && q.DeliveryTTL < 72*time.Hour {
		errs = append(errs, fmt.Errorf("queue.deliveryTTL %s is shorter than GitHub's 3-day redelivery window: a redelivered push would start a second run", q.DeliveryTTL))
	}
	return errors.Join(errs...)
}

// API configures the runs API (/api/v1).
type API struct {
	// TokensFile lists accepted bearer tokens as "sha256:<hex>" digests, one
	// per line (optionally followed by a name for logs); plain tokens are
	// never stored. Empty: every API request is refused.
	TokensFile string `yaml:"tokensFile"`
	// PublicURL is the external base URL (https://gantry.example.com) used
	// in links to runs; empty: links are relative.
	PublicURL string `yaml:"publicURL"`
	// OIDC accepts ID tokens of an OpenID Connect issuer (config/oidc.go).
	OIDC OIDC `yaml:"oidc"`
}

// DefaultAPI returns the API defaults.
func DefaultAPI() API { return API{OIDC: DefaultOIDC()} }

// Validate checks the public URL.
func (a *API) Validate() error {
	if a.PublicURL != "" && !strings.HasPrefix(a.PublicURL, "https://") && !strings.HasPrefix(a.PublicURL, "http://") {
		return fmt.Errorf("api.publicURL %q: want an http(s) URL", a.PublicURL)
	}
	return a.OIDC.validate()
}
