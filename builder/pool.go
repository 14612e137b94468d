package builder

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/moby/buildkit/client"
)

// TLS holds the files for mutual TLS to tcp:// daemons.
type TLS struct {
	CACert, Cert, Key, ServerName string
}

// Pool is a set of buildkitd daemons. Each build goes to the daemon with
// the fewest builds in flight that answers a health check; daemons that do
// not answer are skipped for this build.
type Pool struct {
	dialTimeout time.Duration
	mu          sync.Mutex
	daemons     []*daemon
	next        int // round-robin start among equally busy daemons
}

type daemon struct {
	addr     string
	c        *client.Client
	inFlight int
}

// NewPool connects lazily to addrs (unix:///path or tcp://host:port).
// dialTimeout bounds the health check of one daemon.
func NewPool(addrs []string, tls TLS, dialTimeout time.Duration) (*Pool, error) {
	if len(addrs) == 0 {
		return nil, errors.New("builder: no buildkitd address configured (builder.addrs)")
	}
	if dialTimeout <= 0 {
		dialTimeout = 10 * time.Second
	}
	p := &Pool{dialTimeout: dialTimeout}
	for _, a := range addrs {
		var opts []client.ClientOpt
		if strings.HasPrefix(a, "tcp://") && (tls.CACert != "" || tls.Cert != "" || tls.ServerName != "") {
			if tls.CACert != "" || tls.ServerName != "" {
				opts = append(opts, client.WithServerConfig(tls.ServerName, tls.CACert))
			}
			if tls.Cert != "" {
				opts = append(opts, client.WithCredentials(tls.Cert, tls.Key))
			}
		}
		// client.New does not dial: the connection is made on first use.
		c, err := client.New(context.Background(), a, opts...)
		if err != nil {
			p.Close()
			return nil, fmt.Errorf("builder: buildkitd %s: %w", a, err)
		}
		p.daemons = append(p.daemons, &daemon{addr: a, c: c})
	}
	return p, nil
}

// Close closes every daemon connection.
func (p *Pool) Close() error {
	var errs []error
	for _, d := range p.daemons {
		if err := d.c.Close(); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Addrs lists the pool's addresses.
func (p *Pool) Addrs() []string {
	out := make([]string, len(p.daemons))
	for i, d := range p.daemons {
		out[i] = d.addr
	}
	return out
}

// UnreachableError says that no daemon of the pool answered, and why each
// one failed.
type UnreachableError struct {
	Tried []AddrError
}

// AddrError is one daemon that did not answer.
type AddrError struct {
	Addr string
	Err  error
}

func (e *UnreachableError) Error() string {
	var b strings.Builder
	b.WriteString("no buildkitd daemon could be reached; tried ")
	for i, t := range e.Tried {
		if i > 0 {
			b.WriteString("; ")
		}
		fmt.Fprintf(&b, "%s (%v)", t.Addr, t.Err)
	}
	b.WriteString(": check that buildkitd runs and listens there (builder.addrs), and for tcp:// the builder.tls files")
	return b.String()
}

// acquire picks a healthy daemon and counts a build on it; release must be
// called when the build ends.
func (p *Pool) acquire(ctx context.Context) (*daemon, func(), error) {
	tried := make(map[*daemon]bool, len(p.daemons))
	var failed []AddrError
	for len(tried) < len(p.daemons) {
		d := p.pick(tried)
		tried[d] = true
		err := p.check(ctx, d)
		if err == nil {
			return d, func() { p.mu.Lock(); d.inFlight--; p.mu.Unlock() }, nil
		}
		p.mu.Lock()
		d.inFlight--
		p.mu.Unlock()
		if ctx.Err() != nil {
			return nil, nil, ctx.Err()
		}
		failed = append(failed, AddrError{Addr: d.addr, Err: err})
	}
	return nil, nil, &UnreachableError{Tried: failed}
}

// pick returns the least busy daemon not yet tried, and counts the build on
// it right away so that concurrent builds spread out.
func (p *Pool) pick(tried map[*daemon]bool) *daemon {
	p.mu.Lock()
	defer p.mu.Unlock()
	var best *daemon
	n := len(p.daemons)
	for i := range n {
		d := p.daemons[(p.next+i)%n]
		if tried[d] {
			continue
		}
		if best == nil || d.inFlight < best.inFlight {
			best = d
		}
	}
	p.next = (p.next + 1) % n
	best.inFlight++
	return best
}

// check asks the daemon for its version: cheap, and it proves the socket,
// TLS and the control API all work before a build session is opened.
func (p *Pool) check(ctx context.Context, d *daemon) error {
	ctx, cancel := context.WithTimeout(ctx, p.dialTimeout)
	defer cancel()
	_, err := d.c.Info(ctx)
	if err != nil && ctx.Err() == context.DeadlineExceeded {
		return fmt.Errorf("no answer within %s", p.dialTimeout)
	}
	return err
}
