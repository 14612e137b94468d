package oci

import (
	"io"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"
)

func TestReferrersMemo(t *testing.T) {
	const (
		plain404     = "plain 404"
		nameUnknown  = "name unknown"
		apiPresent   = "api"
		notAcceptabl = "406"
	)
	cases := []struct {
		name string
		// answer is how the registry answers the referrers API.
		answer string
		// remembered: a second request within the TTL never reaches it.
		remembered bool
	}{
		{"registry without the API (distribution 2.x)", plain404, true},
		{"registry refusing the Accept", notAcceptabl, true},
		{"repository unknown to a registry with the API", nameUnknown, false},
		{"registry with the API", apiPresent, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var hits atomic.Int32
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				hits.Add(1)
				switch tc.answer {
				case plain404:
					http.NotFound(w, r)
				case notAcceptabl:
					w.WriteHeader(http.StatusNotAcceptable)
				case nameUnknown:
					w.Header().Set("Content-Type", "application/json")
					w.WriteHeader(http.StatusNotFound)
					_, _ = io.WriteString(w, `{"errors":[{"code":"NAME_UNKNOWN","message":"repository name not known to registry"}]}`)
				case apiPresent:
					w.Header().Set("Content-Type", "application/vnd.oci.image.index.v1+json")
					_, _ = io.WriteString(w, `{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[]}`)
				}
			}))
			defer srv.Close()
			now := time.Unix(1000, 0)
			m := newReferrersMemo(srv.Client().Transport)
			m.now = func() time.Time { return now }
			c := &http.Client{Transport: m}
			get := func() (int, string) {
				t.Helper()
				resp, err := c.Get(srv.URL + "/v2/team/fn/referrers/sha256:0123")
				if err != nil {
					t.Fatal(err)
				}
				defer resp.Body.Close()
				b, err := io.ReadAll(resp.Body)
				if err != nil {
					t.Fatal(err)
				}
				return resp.StatusCode, string(b)
			}
			code1, body1 := get()
			code2, body2 := get()
			if code1 != code2 {
				t.Fatalf("answers differ: %d then %d", code1, code2)
			}
			// The peeked body reaches the caller whole.
			if tc.answer != plain404 && body1 != body2 {
				t.Fatalf("bodies differ: %q then %q", body1, body2)
			}
			want := int32(2)
			if tc.remembered {
				want = 1
			}
			if got := hits.Load(); got != want {
				t.Fatalf("the registry was asked %d times, want %d", got, want)
			}
			// Other requests always reach the registry.
			if resp, err := c.Get(srv.URL + "/v2/team/fn/manifests/sha256-0123"); err == nil {
				resp.Body.Close()
			}
			if got := hits.Load(); got != want+1 {
				t.Fatalf("a manifest read did not reach the registry")
			}
			// After the TTL the registry is asked again.
			now = now.Add(noReferrersTTL + time.Second)
			get()
			if got := hits.Load(); got != want+2 {
				t.Fatalf("after the TTL the registry was asked %d times in all, want %d", got, want+2)
			}
		})
	}
}

func TestIsReferrersPath(t *testing.T) {
	for p, want := range map[string]bool{
		"/v2/team/fn/referrers/sha256:ab":     true,
		"/v2/fn/referrers/sha256:ab":          true,
		"/v2/referrers/referrers/sha256:ab":   true,
		"/v2/team/fn/manifests/sha256:ab":     false,
		"/v2/team/fn/referrers/sha256:ab/x":   false,
		"/v2//referrers/sha256:ab":            false,
		"/v3/team/fn/referrers/sha256:ab":     false,
		"/v2/team/referrers/fn/blobs/sha256:": false,
	} {
		if got := isReferrersPath(p); got != want {
			t.Errorf("isReferrersPath(%q) = %v, want %v", p, got, want)
		}
	}
}
