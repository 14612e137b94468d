package notify

// fakeGitHub is an httptest server speaking the parts of GitHub's REST API
// notify uses, in GitHub's wire format (paths, methods, status codes, JSON
// field names, validation errors), and checking what GitHub checks: the
// App JWT's signature and lifetime, the installation token on repository
// calls, at most 50 annotations per request, a summary within 65535
// characters, and required fields.

import (
	"crypto/rsa"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/golang-jwt/jwt/v5"
)

type fakeGitHub struct {
	t      *testing.T
	srv    *httptest.Server
	appID  int64
	pub    *rsa.PublicKey
	token  string // the PAT, or the installation token it hands out
	instID int64
	ttl    time.Duration // installation token lifetime

	mu          sync.Mutex
	exchanges   int
	lookups     int
	permissions []map[string]string
	statuses    []map[string]any
	checkCreate []map[string]any
	checkUpdate []map[string]any
	failNext    []int // status codes to answer the next repository calls with
	authSeen    []string
}

var (
	reStatus      = regexp.MustCompile(`^/repos/([^/]+)/([^/]+)/statuses/([0-9a-f]{40})$`)
	reCheckRuns   = regexp.MustCompile(`^/repos/([^/]+)/([^/]+)/check-runs$`)
	reCheckRun    = regexp.MustCompile(`^/repos/([^/]+)/([^/]+)/check-runs/(\d+)$`)
	reInstToken   = regexp.MustCompile(`^/app/installations/(\d+)/access_tokens$`)
	reRepoInstall = regexp.MustCompile(`^/repos/([^/]+)/([^/]+)/installation$`)
)

func newFakeGitHub(t *testing.T, appID int64, pub *rsa.PublicKey) *fakeGitHub {
	f := &fakeGitHub{t: t, appID: appID, pub: pub, token: "ghs_installationtoken0123456789", instID: 4242, ttl: time.Hour}
	f.srv = httptest.NewServer(http.HandlerFunc(f.serve))
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fakeGitHub) URL() string { return f.srv.URL + "/" }

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

func validationFailed(w http.ResponseWriter, resource, field, code, msg string) {
	writeJSON(w, http.StatusUnprocessableEntity, map[string]any{
		"message":           "Validation Failed",
		"errors":            []map[string]string{{"resource": resource, "field": field, "code": code, "message": msg}},
		"documentation_url": "https://docs.github.com/rest",
	})
}

// checkJWT verifies the App JWT as GitHub does.
func (f *fakeGitHub) checkJWT(w http.ResponseWriter, r *http.Request) bool {
	raw, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok {
		writeJSON(w, 401, map[string]string{"message": "A JSON web token could not be decoded"})
		return false
	}
	var claims jwt.RegisteredClaims
	_, err := jwt.ParseWithClaims(raw, &claims, func(*jwt.Token) (any, error) { return f.pub, nil },
		jwt.WithValidMethods([]string{"RS256"}), jwt.WithIssuedAt(), jwt.WithExpirationRequired())
	if err != nil || claims.Issuer != strconv.FormatInt(f.appID, 10) ||
		claims.ExpiresAt.Sub(claims.IssuedAt.Time) > 10*time.Minute {
		writeJSON(w, 401, map[string]string{"message": fmt.Sprintf("'Issued at' claim ('iat') must be an Integer representing the time that the assertion was issued (%v)", err)})
		return false
	}
	return true
}

func (f *fakeGitHub) serve(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	body, _ := io.ReadAll(r.Body)
	path := r.URL.Path
	switch {
	case r.Method == http.MethodPost && reInstToken.MatchString(path):
		if !f.checkJWT(w, r) {
			return
		}
		id, _ := strconv.ParseInt(reInstToken.FindStringSubmatch(path)[1], 10, 64)
		if id != f.instID {
			writeJSON(w, 404, map[string]string{"message": "Not Found"})
			return
		}
		var req struct {
			Permissions map[string]string `json:"permissions"`
		}
		if err := json.Unmarshal(body, &req); err != nil {
			writeJSON(w, 400, map[string]string{"message": "Problems parsing JSON"})
			return
		}
		f.exchanges++
		f.permissions = append(f.permissions, req.Permissions)
		writeJSON(w, 201, map[string]any{
			"token":                f.token,
			"expires_at":           time.Now().Add(f.ttl).UTC().Format(time.RFC3339),
			"permissions":          req.Permissions,
			"repository_selection": "selected",
		})
		return
	case r.Method == http.MethodGet && reRepoInstall.MatchString(path):
		if !f.checkJWT(w, r) {
			return
		}
		f.lookups++
		writeJSON(w, 200, map[string]any{"id": f.instID, "app_id": f.appID, "target_type": "Organization"})
		return
	}

	// Repository calls need the token.
	f.authSeen = append(f.authSeen, r.Header.Get("Authorization"))
	if r.Header.Get("Authorization") != "Bearer "+f.token {
		writeJSON(w, 401, map[string]string{"message": "Bad credentials", "documentation_url": "https://docs.github.com/rest"})
		return
	}
	if len(f.failNext) > 0 {
		code := f.failNext[0]
		f.failNext = f.failNext[1:]
		if code == 429 {
			w.Header().Set("Retry-After", "1")
		}
		writeJSON(w, code, map[string]string{"message": http.StatusText(code)})
		return
	}
	var m map[string]any
	if err := json.Unmarshal(body, &m); err != nil {
		writeJSON(w, 400, map[string]string{"message": "Problems parsing JSON"})
		return
	}
	switch {
	case r.Method == http.MethodPost && reStatus.MatchString(path):
		state, _ := m["state"].(string)
		if state != "error" && state != "failure" && state != "pending" && state != "success" {
			validationFailed(w, "Status", "state", "custom", "state is not included in the list")
			return
		}
		if d, _ := m["description"].(string); utf8.RuneCountInString(d) > 140 {
			validationFailed(w, "Status", "description", "custom", "description is too long (maximum is 140 characters)")
			return
		}
		m["sha"] = reStatus.FindStringSubmatch(path)[3]
		f.statuses = append(f.statuses, m)
		writeJSON(w, 201, map[string]any{"id": len(f.statuses), "state": state, "context": m["context"],
			"description": m["description"], "target_url": m["target_url"], "created_at": time.Now().UTC().Format(time.RFC3339)})
	case r.Method == http.MethodPost && reCheckRuns.MatchString(path):
		if m["name"] == nil || m["head_sha"] == nil {
			validationFailed(w, "CheckRun", "name", "missing_field", "name and head_sha are required")
			return
		}
		if !f.checkOutput(w, m) {
			return
		}
		f.checkCreate = append(f.checkCreate, m)
		writeJSON(w, 201, map[string]any{"id": 7001, "head_sha": m["head_sha"], "status": m["status"],
			"conclusion": m["conclusion"], "name": m["name"], "external_id": m["external_id"]})
	case r.Method == http.MethodPatch && reCheckRun.MatchString(path):
		if reCheckRun.FindStringSubmatch(path)[3] != "7001" {
			writeJSON(w, 404, map[string]string{"message": "Not Found"})
			return
		}
		if !f.checkOutput(w, m) {
			return
		}
		f.checkUpdate = append(f.checkUpdate, m)
		writeJSON(w, 200, map[string]any{"id": 7001, "status": m["status"], "conclusion": m["conclusion"], "name": m["name"]})
	default:
		writeJSON(w, 404, map[string]string{"message": "Not Found"})
	}
}

func (f *fakeGitHub) checkOutput(w http.ResponseWriter, m map[string]any) bool {
	out, _ := m["output"].(map[string]any)
	if out == nil {
		return true
	}
	if out["title"] == nil || out["summary"] == nil {
		validationFailed(w, "CheckRun", "output", "missing_field", "output needs title and summary")
		return false
	}
	if s, _ := out["summary"].(string); utf8.RuneCountInString(s) > 65535 {
		validationFailed(w, "CheckRun", "summary", "custom", "Only 65535 characters are allowed; 65536 were supplied.")
		return false
	}
	anns, _ := out["annotations"].([]any)
	if len(anns) > 50 {
		validationFailed(w, "CheckRun", "annotations", "custom", "Only 50 annotations are allowed per request")
		return false
	}
	for _, a := range anns {
		am := a.(map[string]any)
		for _, k := range []string{"path", "start_line", "end_line", "annotation_level", "message"} {
			if am[k] == nil {
				validationFailed(w, "CheckRun", "annotations", "missing_field", k+" is required")
				return false
			}
		}
		switch am["annotation_level"] {
		case "notice", "warning", "failure":
		default:
			validationFailed(w, "CheckRun", "annotation_level", "invalid", "annotation_level is not included in the list")
			return false
		}
	}
	return true
}

// snapshot returns copies of what was received.
func (f *fakeGitHub) snapshot() (statuses, creates, updates []map[string]any, exchanges int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]map[string]any(nil), f.statuses...), append([]map[string]any(nil), f.checkCreate...),
		append([]map[string]any(nil), f.checkUpdate...), f.exchanges
}
