package notify

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// retry calls attempt until it succeeds, fails permanently, or
// notify.attempts is used up. Each attempt gets notify.timeout. Waits
// grow from notify.backoff, doubling, with jitter, up to
// notify.maxBackoff; a receiver's Retry-After is honoured within that cap.
func (n *Notifier) retry(ctx context.Context, attempt func(context.Context) error) (int, error) {
	var err error
	for i := 1; ; i++ {
		actx, cancel := context.WithTimeout(ctx, n.cfg.Timeout)
		err = attempt(actx)
		timedOut := actx.Err() != nil && ctx.Err() == nil
		cancel()
		if err == nil {
			return i, nil
		}
		if timedOut {
			err = fmt.Errorf("no answer within notify.timeout (%s): %w", n.cfg.Timeout, err)
		}
		if isPermanent(err) || i >= n.cfg.Attempts || ctx.Err() != nil {
			if i > 1 {
				err = fmt.Errorf("after %d attempts: %w", i, err)
			}
			return i, err
		}
		wait := n.backoff(i)
		if ra := retryAfterOf(err); ra > 0 {
			wait = min(ra, n.cfg.MaxBackoff)
		}
		if serr := n.sleep(ctx, wait); serr != nil {
			return i, fmt.Errorf("after %d attempts, cancelled: %w", i, err)
		}
	}
}

// backoff is the wait after attempt i (1-based).
func (n *Notifier) backoff(i int) time.Duration {
	d := n.cfg.Backoff
	for k := 1; k < i && d < n.cfg.MaxBackoff; k++ {
		d *= 2
	}
	return n.jitter(min(d, n.cfg.MaxBackoff))
}

// fullJitter spreads retries between half and all of d, so that many
// workers retrying one receiver do not hit it in step.
func fullJitter(d time.Duration) time.Duration {
	if d <= 1 {
		return d
	}
	return d/2 + rand.N(d/2+1)
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// statusError is a non-2xx answer.
type statusError struct {
	target     string
	code       int
	retryAfter time.Duration
	body       string // a bounded, single-line excerpt
}

func (e *statusError) Error() string {
	if e.body == "" {
		return fmt.Sprintf("%s answered HTTP %d", e.target, e.code)
	}
	return fmt.Sprintf("%s answered HTTP %d: %s", e.target, e.code, e.body)
}

// permanentError stops retries.
type permanentError struct{ err error }

func (e *permanentError) Error() string { return e.err.Error() }
func (e *permanentError) Unwrap() error { return e.err }

func permanent(err error) error { return &permanentError{err} }

// isPermanent: client errors (4xx but 408 and 429) will not heal by
// themselves; network errors, timeouts and 5xx may.
func isPermanent(err error) bool {
	var p *permanentError
	if errors.As(err, &p) {
		return true
	}
	var se *statusError
	if errors.As(err, &se) {
		return se.code >= 400 && se.code < 500 && se.code != http.StatusRequestTimeout && se.code != http.StatusTooManyRequests
	}
	return false
}

func retryAfterOf(err error) time.Duration {
	var se *statusError
	if errors.As(err, &se) {
		return se.retryAfter
	}
	var ra interface{ retryAfterDuration() time.Duration }
	if errors.As(err, &ra) {
		return ra.retryAfterDuration()
	}
	return 0
}

// parseRetryAfter reads a Retry-After header: delay seconds or an HTTP
// date. Unparseable or negative values are ignored (0).
func parseRetryAfter(v string, now time.Time) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	if secs, err := strconv.ParseInt(v, 10, 64); err == nil {
		if secs <= 0 || secs > 24*3600 {
			return 0
		}
		return time.Duration(secs) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil {
		if d := t.Sub(now); d > 0 && d <= 24*time.Hour {
			return d
		}
	}
	return 0
}

// maxResponseBody bounds every response body read (GitHub's JSON
// answers included): a receiver cannot make Gantry buffer without limit.
const maxResponseBody = 1 << 20

// boundedTransport caps response bodies.
type boundedTransport struct{ next http.RoundTripper }

func (t boundedTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := t.next.RoundTrip(req)
	if err != nil {
		return nil, err
	}
	resp.Body = struct {
		io.Reader
		io.Closer
	}{io.LimitReader(resp.Body, maxResponseBody), resp.Body}
	return resp, nil
}

func transportOrDefault(rt http.RoundTripper) http.RoundTripper {
	if rt == nil {
		return http.DefaultTransport
	}
	return rt
}

// noRedirects: a webhook that redirects could bounce a signed body (or a
// token) to another host; a notification is delivered where configured or
// not at all.
func noRedirects(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }

// postJSON makes one POST. The URL never appears in errors: for chat
// webhooks the URL is the secret.
func (n *Notifier) postJSON(ctx context.Context, target, rawURL, contentType string, header http.Header, body []byte) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, rawURL, bytes.NewReader(body))
	if err != nil {
		return permanent(fmt.Errorf("%s: building the request: %v", target, redactURLError(err)))
	}
	req.Header.Set("Content-Type", contentType)
	req.Header.Set("User-Agent", "gantry-notify")
	for k, vs := range header {
		req.Header[k] = vs
	}
	resp, err := n.hc.Do(req)
	if err != nil {
		return fmt.Errorf("%s: %v", target, redactURLError(err))
	}
	defer resp.Body.Close()
	excerpt, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		return nil
	}
	return &statusError{
		target:     target,
		code:       resp.StatusCode,
		retryAfter: parseRetryAfter(resp.Header.Get("Retry-After"), n.now()),
		body:       oneLine(string(excerpt)),
	}
}

// redactURLError drops the URL from a *url.Error, keeping the cause
// (connection refused, timeout, TLS).
func redactURLError(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		var ne net.Error
		if errors.As(ue.Err, &ne) && ne.Timeout() {
			return fmt.Errorf("%s: timeout", ue.Op)
		}
		return fmt.Errorf("%s: %v", ue.Op, ue.Err)
	}
	return err
}

func oneLine(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	return truncate(s, 200)
}

// checkURL accepts https, and plain http only to loopback.
func checkURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		return errors.New("not an absolute http(s) URL")
	}
	switch u.Scheme {
	case "https":
		return nil
	case "http":
		h := u.Hostname()
		if ip := net.ParseIP(h); (ip != nil && ip.IsLoopback()) || h == "localhost" {
			return nil
		}
		return errors.New("plain http is allowed only to loopback; use https")
	}
	return errors.New("the URL must use https")
}
