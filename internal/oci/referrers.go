package oci

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"
)

// noReferrersTTL is how long a registry seen without the OCI referrers API
// is taken to still have none. A registry upgraded meanwhile is asked again
// after it; until then bundles it lists only through the API are not seen
// (refused, never admitted on that account).
const noReferrersTTL = 5 * time.Minute

// maxNoReferrersHosts bounds the registries remembered.
const maxNoReferrersHosts = 64

// referrersMemo remembers the registries that answered the referrers API
// (GET /v2/<repo>/referrers/<digest>) as one that has none, and answers
// that request for them itself, at once, with the status they gave: go-containerregistry
// then reads the referrers tag straight away, and listing the Sigstore
// bundles of an image costs one round trip instead of two. It sits below
// authentication (a 401 goes up to be answered as before) and sees only
// the answers of the registry itself.
type referrersMemo struct {
	base http.RoundTripper
	now  func() time.Time

	mu     sync.Mutex
	absent map[string]absence // by host
}

// absence is a registry's answer to the referrers API, kept until until.
type absence struct {
	status int
	until  time.Time
}

func newReferrersMemo(base http.RoundTripper) *referrersMemo {
	return &referrersMemo{base: base, now: time.Now, absent: map[string]absence{}}
}

func (m *referrersMemo) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.Method != http.MethodGet || !isReferrersPath(req.URL.Path) {
		return m.base.RoundTrip(req)
	}
	host := req.URL.Host
	m.mu.Lock()
	a, known := m.absent[host]
	m.mu.Unlock()
	if known && m.now().Before(a.until) {
		return &http.Response{
			Status: fmt.Sprintf("%d %s", a.status, http.StatusText(a.status)), StatusCode: a.status,
			Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
			Header: http.Header{"Content-Type": {"text/plain; charset=utf-8"}},
			Body:   http.NoBody, Request: req,
		}, nil
	}
	resp, err := m.base.RoundTrip(req)
	if err != nil {
		return resp, err
	}
	switch resp.StatusCode {
	case http.StatusNotFound, http.StatusBadRequest, http.StatusNotAcceptable:
	default:
		return resp, nil
	}
	// A registry with the API answers 404 only with a distribution error
	// about the repository or the image (NAME_UNKNOWN, MANIFEST_UNKNOWN):
	// that says nothing about the API, and is not remembered.
	head, err := io.ReadAll(io.LimitReader(resp.Body, 4<<10))
	resp.Body = struct {
		io.Reader
		io.Closer
	}{io.MultiReader(bytes.NewReader(head), resp.Body), resp.Body}
	if err != nil || bytes.Contains(head, []byte("NAME_UNKNOWN")) || bytes.Contains(head, []byte("MANIFEST_UNKNOWN")) {
		return resp, nil
	}
	m.mu.Lock()
	if _, ok := m.absent[host]; !ok && len(m.absent) >= maxNoReferrersHosts {
		clear(m.absent)
	}
	m.absent[host] = absence{status: resp.StatusCode, until: m.now().Add(noReferrersTTL)}
	m.mu.Unlock()
	return resp, nil
}

// isReferrersPath says whether p is /v2/<repo>/referrers/<digest>.
func isReferrersPath(p string) bool {
	rest, ok := strings.CutPrefix(p, "/v2/")
	if !ok {
		return false
	}
	i := strings.LastIndex(rest, "/referrers/")
	return i > 0 && !strings.Contains(rest[i+len("/referrers/"):], "/")
}
