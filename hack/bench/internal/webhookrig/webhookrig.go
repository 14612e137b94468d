// Package webhookrig runs the admission webhook in a benchmark program as
// `gantry admission` wires it: the evaluator admission.Build makes from a
// configuration, served by webhook.Serve over TLS with a certificate of a
// CA made for the run, on a free loopback port.
package webhookrig

import (
	"context"
	"crypto/tls"
	"net"
	"net/http"
	"time"

	"github.com/gantry-dev/gantry/admission/online"
	"github.com/gantry-dev/gantry/admission/webhook"
	"github.com/gantry-dev/gantry/config"
	"github.com/gantry-dev/gantry/internal/tlsreload"
)

// Rig is a running webhook server.
type Rig struct {
	// URL of its /validate endpoint.
	URL string
	// CAPEM is the CA its serving certificate chains to.
	CAPEM []byte
	stop  context.CancelFunc
	done  chan error
}

// Options adjust what is served; both may be nil.
type Options struct {
	// Listener wraps the TCP listener (e.g. to count connections).
	Listener func(net.Listener) net.Listener
	// Handler wraps the webhook's handler (e.g. to count or time reviews).
	Handler func(http.Handler) http.Handler
}

// Start builds the evaluator from cfg and serves it until Close.
func Start(cfg *config.Config, opts Options) (*Rig, error) {
	eval, err := online.Build(cfg, online.Options{})
	if err != nil {
		return nil, err
	}
	caPEM, certPEM, keyPEM, err := tlsreload.Generate([]string{"127.0.0.1"}, time.Hour)
	if err != nil {
		return nil, err
	}
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	if opts.Listener != nil {
		ln = opts.Listener(ln)
	}
	var h http.Handler = webhook.New(eval, webhook.Options{MaxBodyBytes: cfg.Admission.MaxBodyBytes})
	if opts.Handler != nil {
		h = opts.Handler(h)
	}
	ctx, stop := context.WithCancel(context.Background())
	r := &Rig{URL: "https://" + ln.Addr().String() + "/validate", CAPEM: caPEM, stop: stop, done: make(chan error, 1)}
	go func() {
		r.done <- webhook.Serve(ctx, ln, &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{pair}}, h, nil)
	}()
	return r, nil
}

// Close stops the server and returns what Serve returned.
func (r *Rig) Close() error {
	r.stop()
	return <-r.done
}
