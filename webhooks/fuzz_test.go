package webhooks_test

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/gantry-dev/gantry/webhooks"
)

// FuzzReceive drives the verify + parse path with arbitrary bodies and
// headers, signed or not. Invariants: no panic; a 2xx only for a body
// signed with the secret; 202 only for a push; every answer is JSON with
// one of the documented codes.
func FuzzReceive(f *testing.F) {
	r := newReceiver(f)
	h := r.handler
	f.Add([]byte(vectorPayload), "", "push", "d-1", false)
	f.Add([]byte(vectorPayload), vectorHeader, "ping", "d-2", false)
	f.Add(pushPayload("acme/app", "refs/heads/main", sha(1), "x", false), "", "push", "d-3", true)
	f.Add(pushPayload("acme/app", "refs/tags/v1", sha(2), "[skip ci]", false), "", "push", "d-4", true)
	f.Add(pushPayload("acme/app", "refs/heads/main", sha(3), "x", true), "", "push", "d-5", true)
	f.Add([]byte(`{"ref":"refs/heads/main","after":"`+sha(4)+`","repository":{"full_name":"acme/app","clone_url":"http://x"}}`), "", "push", "d-6", true)
	f.Add([]byte(`{"ref":"refs/heads/../../x","after":"`+sha(4)+`","repository":{"full_name":"acme/app"}}`), "", "push", "d-7", true)
	f.Add([]byte(`{}`), "", "ping", "d-8", true)
	f.Add([]byte("\xff\xfe"), "sha256=", "push", "", true)
	f.Fuzz(func(t *testing.T, body []byte, sig, event, delivery string, sign bool) {
		req := httptest.NewRequest(http.MethodPost, "/webhooks/github", bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("X-GitHub-Event", event)
		req.Header.Set("X-GitHub-Delivery", delivery)
		if sign {
			sig = webhooks.Sign([]byte(vectorSecret), body)
		}
		req.Header.Set("X-Hub-Signature-256", sig)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		var a webhooks.Answer
		if err := json.Unmarshal(rec.Body.Bytes(), &a); err != nil {
			t.Fatalf("answer %d is not JSON: %q", rec.Code, rec.Body.String())
		}
		validSig := sign || webhooks.Sign([]byte(vectorSecret), body) == sig || webhooks.Sign([]byte("old-secret"), body) == sig
		switch rec.Code {
		case 200, 202:
			if !validSig {
				t.Fatalf("%d for a delivery not signed with the secret (sig %q)", rec.Code, sig)
			}
			if rec.Code == 202 && (event != "push" || a.RunID == "") {
				t.Fatalf("202 for event %q: %+v", event, a)
			}
		case 400, 401, 413, 415, 503:
			if rec.Code == 401 && validSig {
				t.Fatalf("401 for a valid signature")
			}
		default:
			t.Fatalf("undocumented status %d", rec.Code)
		}
	})
}
