package webhooks_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gantry-dev/gantry/internal/testenv"
	"github.com/gantry-dev/gantry/pipelines"
	"github.com/gantry-dev/gantry/webhooks"
)

// GitHub's documented test vector.
const (
	vectorSecret  = "It's a Secret to Everybody"
	vectorPayload = "Hello, World!"
	vectorHeader  = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
)

func TestVerify(t *testing.T) {
	one, err := webhooks.NewSecrets([]byte(vectorSecret))
	if err != nil {
		t.Fatal(err)
	}
	rotated, err := webhooks.NewSecrets([]byte("old secret"), []byte(vectorSecret))
	if err != nil {
		t.Fatal(err)
	}
	// A valid secret that is not the one the vector was signed with (a
	// zero Secrets would refuse everything and prove nothing).
	wrong, err := webhooks.NewSecrets([]byte("It's a secret to everybody"))
	if err != nil {
		t.Fatal(err)
	}
	body := []byte(vectorPayload)
	hexDigest := strings.TrimPrefix(vectorHeader, "sha256=")
	tests := []struct {
		name      string
		secrets   webhooks.Secrets
		body      string
		sig, sha1 string
		want      error
	}{
		{"GitHub's vector", one, vectorPayload, vectorHeader, "", nil},
		{"rotated: second secret matches", rotated, vectorPayload, vectorHeader, "", nil},
		{"upper-case hex", one, vectorPayload, "sha256=" + strings.ToUpper(hexDigest), "", nil},
		{"upper-case scheme", one, vectorPayload, "SHA256=" + hexDigest, "", nil},
		{"surrounding spaces", one, vectorPayload, "  " + vectorHeader + " ", "", nil},
		{"tampered body", one, "Hello, World?", vectorHeader, "", webhooks.ErrBadSignature},
		{"appended body", one, vectorPayload + "\n", vectorHeader, "", webhooks.ErrBadSignature},
		{"truncated body", one, vectorPayload[:5], vectorHeader, "", webhooks.ErrBadSignature},
		{"wrong secret (case)", wrong, vectorPayload, vectorHeader, "", webhooks.ErrBadSignature},
		{"missing", one, vectorPayload, "", "", webhooks.ErrNoSignature},
		{"SHA-1 only", one, vectorPayload, "", "sha1=0123456789abcdef0123456789abcdef01234567", webhooks.ErrSHA1Only},
		{"sha1 scheme in the 256 header", one, vectorPayload, "sha1=" + hexDigest, "", webhooks.ErrBadSignature},
		{"no scheme", one, vectorPayload, hexDigest, "", webhooks.ErrBadSignature},
		{"short digest", one, vectorPayload, vectorHeader[:len(vectorHeader)-2], "", webhooks.ErrBadSignature},
		{"long digest", one, vectorPayload, vectorHeader + "00", "", webhooks.ErrBadSignature},
		{"non-hex digest", one, vectorPayload, "sha256=" + strings.Repeat("zz", 32), "", webhooks.ErrBadSignature},
		{"two values", one, vectorPayload, vectorHeader + "," + vectorHeader, "", webhooks.ErrBadSignature},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.secrets.Verify([]byte(tc.body), tc.sig, tc.sha1)
			if !errors.Is(err, tc.want) {
				t.Fatalf("Verify = %v, want %v", err, tc.want)
			}
		})
	}
	if got := webhooks.Sign([]byte(vectorSecret), body); got != vectorHeader {
		t.Fatalf("Sign = %s", got)
	}
	if _, err := webhooks.NewSecrets(); err == nil {
		t.Fatal("no secrets accepted")
	}
	if _, err := webhooks.NewSecrets([]byte("")); err == nil {
		t.Fatal("empty secret accepted")
	}
}

func TestLoadSecrets(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		p := dir + "/" + name
		if err := osWriteFile(p, content); err != nil {
			t.Fatal(err)
		}
		return p
	}
	good := write("good", vectorSecret+"\n")
	empty := write("empty", "\n")
	huge := write("huge", strings.Repeat("x", 5000))
	env := map[string]string{"HOOK_SECRET": "from-env"}
	getenv := func(k string) string { return env[k] }
	s, err := webhooks.LoadSecrets([]string{good}, []string{"HOOK_SECRET"}, getenv)
	if err != nil {
		t.Fatal(err)
	}
	if s.Verify([]byte(vectorPayload), vectorHeader, "") != nil {
		t.Fatal("file secret (newline trimmed) does not verify the vector")
	}
	if s.Verify([]byte("x"), webhooks.Sign([]byte("from-env"), []byte("x")), "") != nil {
		t.Fatal("env secret not used")
	}
	for _, tc := range []struct {
		files, envs []string
		want        string
	}{
		{[]string{empty}, nil, "empty"},
		{[]string{huge}, nil, "larger"},
		{[]string{dir + "/missing"}, nil, "no such file"},
		{nil, []string{"UNSET"}, "UNSET"},
		{nil, nil, "no GitHub webhook secret"},
	} {
		_, err := webhooks.LoadSecrets(tc.files, tc.envs, getenv)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v %v: %v, want error containing %q", tc.files, tc.envs, err, tc.want)
		}
		if err != nil && strings.Contains(err.Error(), "from-env") {
			t.Errorf("error reveals a secret: %v", err)
		}
	}
}

// receiver is a receiver on a real HTTP server with a real (embedded) queue.
type receiver struct {
	url     string
	queue   *pipelines.Queue
	handler http.Handler
}

func newReceiver(t testing.TB) *receiver {
	t.Helper()
	testenv.Require(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	q, err := pipelines.Open(ctx, pipelines.Options{Connection: pipelines.Connection{DataDir: t.TempDir()}, CancelSuperseded: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(q.Close)
	secrets, _ := webhooks.NewSecrets([]byte("old-secret"), []byte(vectorSecret))
	h, err := webhooks.New(webhooks.Options{
		Secrets: secrets,
		Queue:   q,
		Repos: []webhooks.Repo{
			{Name: "Acme/App", Branches: []string{"main", "release/*"}, Tags: []string{"v*"}},
			{Name: "acme/other", Branches: []string{"main"}},
		},
		RunURL: func(id string) string { return "/api/v1/runs/" + id },
	})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return &receiver{url: srv.URL, queue: q, handler: h}
}

var deliverySeq atomic.Int64

func newDeliveryID() string {
	return fmt.Sprintf("72d3162e-cc78-11e3-81ab-%012d", deliverySeq.Add(1)+time.Now().UnixNano()%1e9)
}

func pushPayload(repo, ref, after, message string, deleted bool) []byte {
	p := map[string]any{
		"ref": ref, "before": strings.Repeat("a", 40), "after": after, "deleted": deleted,
		"repository": map[string]any{"full_name": repo, "clone_url": "https://github.com/" + repo + ".git"},
		"pusher":     map[string]any{"name": "octocat"},
		"sender":     map[string]any{"login": "octocat"},
		"head_commit": map[string]any{
			"id": after, "message": message,
		},
	}
	b, _ := json.Marshal(p)
	return b
}

type delivery struct {
	event, id, contentType string
	body                   []byte
	// sig overrides the signature header; "-" sends none.
	sig, sha1 string
	secret    string
}

func (r *receiver) send(t testing.TB, d delivery) (int, webhooks.Answer) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, r.url, bytes.NewReader(d.body))
	if d.contentType == "" {
		d.contentType = "application/json"
	}
	req.Header.Set("Content-Type", d.contentType)
	req.Header.Set("X-GitHub-Event", d.event)
	req.Header.Set("X-GitHub-Delivery", d.id)
	secret := d.secret
	if secret == "" {
		secret = vectorSecret
	}
	switch d.sig {
	case "":
		req.Header.Set("X-Hub-Signature-256", webhooks.Sign([]byte(secret), d.body))
	case "-":
	default:
		req.Header.Set("X-Hub-Signature-256", d.sig)
	}
	if d.sha1 != "" {
		req.Header.Set("X-Hub-Signature", d.sha1)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var a webhooks.Answer
	if err := json.NewDecoder(resp.Body).Decode(&a); err != nil {
		t.Fatalf("answer is not JSON: %v", err)
	}
	return resp.StatusCode, a
}

func sha(n int) string { return fmt.Sprintf("%040x", n) }

func TestReceiver(t *testing.T) {
	r := newReceiver(t)
	main := pushPayload("acme/app", "refs/heads/main", sha(1), "fix: things", false)
	form := "payload=" + url.QueryEscape(string(pushPayload("acme/app", "refs/heads/release/1.2", sha(2), "release", false)))
	tests := []struct {
		name       string
		d          delivery
		wantCode   int
		wantStatus string
		reason     string
	}{
		{"ping", delivery{event: "ping", body: []byte(`{"zen":"Keep it logically awesome."}`)}, 200, "pong", ""},
		{"push to a configured branch (repo name in another case)", delivery{event: "push", body: main}, 202, "queued", ""},
		{"signed with the old secret during rotation", delivery{event: "push", secret: "old-secret", body: pushPayload("acme/app", "refs/heads/main", sha(3), "x", false)}, 202, "queued", ""},
		{"glob branch, form-encoded body", delivery{event: "push", contentType: "application/x-www-form-urlencoded", body: []byte(form)}, 202, "queued", ""},
		{"configured tag", delivery{event: "push", body: pushPayload("acme/app", "refs/tags/v1.0.0", sha(4), "v1", false)}, 202, "queued", ""},
		{"unconfigured tag", delivery{event: "push", body: pushPayload("acme/other", "refs/tags/v1.0.0", sha(5), "v1", false)}, 200, "ignored", "tag pushes"},
		{"unconfigured branch", delivery{event: "push", body: pushPayload("acme/app", "refs/heads/feature", sha(6), "wip", false)}, 200, "ignored", "branch feature is not configured"},
		{"unconfigured repo", delivery{event: "push", body: pushPayload("evil/app", "refs/heads/main", sha(7), "x", false)}, 200, "ignored", "evil/app is not configured"},
		{"branch deletion", delivery{event: "push", body: pushPayload("acme/app", "refs/heads/main", strings.Repeat("0", 40), "", true)}, 200, "ignored", "deleted"},
		{"[skip ci]", delivery{event: "push", body: pushPayload("acme/app", "refs/heads/main", sha(8), "docs: typo [skip ci]", false)}, 200, "ignored", "[skip ci]"},
		{"[CI SKIP] any case", delivery{event: "push", body: pushPayload("acme/app", "refs/heads/main", sha(9), "docs\n\n[CI SKIP]", false)}, 200, "ignored", "[ci skip]"},
		{"other event", delivery{event: "issues", body: []byte(`{}`)}, 200, "ignored", `"issues" is not handled`},
		{"malformed JSON after a valid signature", delivery{event: "push", body: []byte(`{"ref":`)}, 400, "error", "not a valid push"},
		{"push without a commit", delivery{event: "push", body: []byte(`{"ref":"refs/heads/main","repository":{"full_name":"acme/app"}}`)}, 400, "error", "after"},
		{"push with a bad repo name", delivery{event: "push", body: pushPayload("acme/../app", "refs/heads/main", sha(10), "x", false)}, 400, "error", "full_name"},
		{"ping with malformed JSON", delivery{event: "ping", body: []byte(`nope`)}, 400, "error", "JSON"},
		{"wrong secret", delivery{event: "push", secret: "guess", body: main}, 401, "error", "does not match"},
		{"no signature", delivery{event: "push", sig: "-", body: main}, 401, "error", "missing"},
		{"SHA-1 only", delivery{event: "push", sig: "-", sha1: "sha1=" + strings.Repeat("a", 40), body: main}, 401, "error", "SHA-1"},
		{"malformed signature", delivery{event: "push", sig: "sha256=xyz", body: main}, 401, "error", "does not match"},
		{"missing delivery id", delivery{event: "push", id: "-", body: main}, 400, "error", "X-GitHub-Delivery"},
		{"malformed delivery id", delivery{event: "push", id: "../../x", body: main}, 400, "error", "X-GitHub-Delivery"},
		{"unsupported content type", delivery{event: "push", contentType: "text/plain", body: main}, 415, "error", "application/json"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			switch tc.d.id {
			case "":
				tc.d.id = newDeliveryID()
			case "-":
				tc.d.id = ""
			}
			code, a := r.send(t, tc.d)
			if code != tc.wantCode || a.Status != tc.wantStatus || !strings.Contains(a.Reason, tc.reason) {
				t.Fatalf("got %d %+v, want %d %s (reason containing %q)", code, a, tc.wantCode, tc.wantStatus, tc.reason)
			}
			if code == 202 {
				// 202 means durably queued: the record is there already.
				run, err := r.queue.Get(context.Background(), a.RunID)
				if err != nil || run.State != pipelines.StateQueued || run.DeliveryID != tc.d.id || a.Run != "/api/v1/runs/"+a.RunID {
					t.Fatalf("run after 202: %v %+v (answer %+v)", err, run, a)
				}
			}
			if code == 401 && strings.Contains(a.Reason, vectorSecret) {
				t.Fatal("answer leaks the secret")
			}
		})
	}
}

func TestRedeliveryPointsToTheSameRun(t *testing.T) {
	r := newReceiver(t)
	d := delivery{event: "push", id: newDeliveryID(), body: pushPayload("acme/app", "refs/heads/main", sha(42), "x", false)}
	code, first := r.send(t, d)
	if code != 202 {
		t.Fatalf("first delivery: %d %+v", code, first)
	}
	for range 3 {
		code, again := r.send(t, d)
		if code != 200 || again.Status != "duplicate" || again.RunID != first.RunID {
			t.Fatalf("redelivery: %d %+v", code, again)
		}
	}
	// A replayed id with a different (validly signed) body is still refused
	// a second run: the id, not the body, is the guard.
	d.body = pushPayload("acme/app", "refs/heads/main", sha(43), "y", false)
	if code, again := r.send(t, d); code != 200 || again.RunID != first.RunID {
		t.Fatalf("replayed id, new body: %d %+v", code, again)
	}
	page, err := r.queue.List(context.Background(), pipelines.Filter{Repo: "acme/app"})
	if err != nil || len(page.Runs) != 1 {
		t.Fatalf("runs: %v %d", err, len(page.Runs))
	}
}

func TestBodyLimits(t *testing.T) {
	r := newReceiver(t)
	big := bytes.Repeat([]byte("a"), webhooks.MaxBodyBytes+1)
	// Declared too large: refused before reading.
	code, a := r.send(t, delivery{event: "push", id: newDeliveryID(), body: big})
	if code != 413 || a.Status != "error" {
		t.Fatalf("oversize body: %d %+v", code, a)
	}
	// Too large without a Content-Length (chunked): refused while reading.
	req, _ := http.NewRequest(http.MethodPost, r.url, io.MultiReader(bytes.NewReader(big)))
	req.ContentLength = -1
	req.Header.Set("X-GitHub-Event", "push")
	req.Header.Set("X-GitHub-Delivery", newDeliveryID())
	req.Header.Set("X-Hub-Signature-256", webhooks.Sign([]byte(vectorSecret), big))
	resp, err := http.DefaultClient.Do(req)
	if err == nil {
		resp.Body.Close()
		if resp.StatusCode != 413 {
			t.Fatalf("chunked oversize body: %d", resp.StatusCode)
		}
	} // else: the server may close the connection mid-upload, also a refusal

	// Exactly at the limit is read (and then judged on its signature).
	atLimit := bytes.Repeat([]byte(" "), webhooks.MaxBodyBytes)
	if code, a := r.send(t, delivery{event: "push", id: newDeliveryID(), sig: "sha256=" + strings.Repeat("0", 64), body: atLimit}); code != 401 {
		t.Fatalf("body at the limit: %d %+v", code, a)
	}

	// Truncated: the connection ends before Content-Length bytes arrived.
	body := pushPayload("acme/app", "refs/heads/main", sha(77), "x", false)
	conn, err := net.Dial("tcp", strings.TrimPrefix(r.url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "POST / HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nX-GitHub-Event: push\r\n"+
		"X-GitHub-Delivery: %s\r\nX-Hub-Signature-256: %s\r\nContent-Length: %d\r\n\r\n",
		newDeliveryID(), webhooks.Sign([]byte(vectorSecret), body), len(body))
	_, _ = conn.Write(body[:len(body)/2])
	_ = conn.(*net.TCPConn).CloseWrite()
	_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	resp, err = http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("no answer to a truncated body: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != 400 {
		t.Fatalf("truncated body: %d", resp.StatusCode)
	}
	page, err := r.queue.List(context.Background(), pipelines.Filter{})
	if err != nil || len(page.Runs) != 0 {
		t.Fatalf("a refused delivery queued a run: %v %+v", err, page.Runs)
	}
}

func TestMethodAndQueueFailure(t *testing.T) {
	r := newReceiver(t)
	resp, err := http.Get(r.url)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 405 || resp.Header.Get("Allow") != "POST" {
		t.Fatalf("GET: %d Allow=%q", resp.StatusCode, resp.Header.Get("Allow"))
	}
	// The queue goes away: no 2xx may be given for an unqueued run.
	r.queue.Close()
	code, a := r.send(t, delivery{event: "push", id: newDeliveryID(), body: pushPayload("acme/app", "refs/heads/main", sha(88), "x", false)})
	if code != 503 || a.Status != "error" {
		t.Fatalf("queue down: %d %+v", code, a)
	}
}

func TestNewRefusesBadOptions(t *testing.T) {
	s, _ := webhooks.NewSecrets([]byte("s"))
	q := &pipelines.Queue{}
	for _, tc := range []struct {
		name string
		opts webhooks.Options
	}{
		{"no secret", webhooks.Options{Queue: q}},
		{"no queue", webhooks.Options{Secrets: s}},
		{"bad repo", webhooks.Options{Secrets: s, Queue: q, Repos: []webhooks.Repo{{Name: "noslash"}}}},
		{"bad glob", webhooks.Options{Secrets: s, Queue: q, Repos: []webhooks.Repo{{Name: "a/b", Branches: []string{"[x"}}}}},
		{"duplicate repo", webhooks.Options{Secrets: s, Queue: q, Repos: []webhooks.Repo{{Name: "a/b"}, {Name: "A/B"}}}},
	} {
		if _, err := webhooks.New(tc.opts); err == nil {
			t.Errorf("%s: accepted", tc.name)
		}
	}
}
