package webhook

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// BenchmarkReviewWarm is the server-side cost of one review whose images
// need no registry call (the warm path, minus TLS and the network).
func BenchmarkReviewWarm(b *testing.B) {
	h := newHandler(b)
	body := review("Pod", "", "v1", "", "CREATE", goodPod)
	b.ReportAllocs()
	for b.Loop() {
		r := httptest.NewRequest(http.MethodPost, "/validate", strings.NewReader(body))
		r.Header.Set("Content-Type", "application/json")
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		if w.Code != 200 || !strings.Contains(w.Body.String(), `"allowed":true`) {
			b.Fatal(w.Body.String())
		}
	}
}
