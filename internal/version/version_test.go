package version

import (
	"runtime"
	"strings"
	"testing"
)

func TestString(t *testing.T) {
	i := Info{Version: "v1.2.3", Commit: "abc1234", GoVersion: "go1.26.8", Platform: "linux/amd64"}
	if got, want := i.String(), "gantry v1.2.3 (commit abc1234, go1.26.8, linux/amd64)"; got != want {
		t.Fatalf("String() = %q, want %q", got, want)
	}
	g := Get()
	if g.GoVersion != runtime.Version() || !strings.Contains(g.Platform, runtime.GOARCH) {
		t.Fatalf("Get() = %+v: not this build's toolchain and platform", g)
	}
}

func TestWrite(t *testing.T) {
	i := Info{Version: "v1", Commit: "c", GoVersion: "go1", Platform: "linux/amd64"}
	var text, js strings.Builder
	if err := i.Write(&text, "text"); err != nil || text.String() != i.String()+"\n" {
		t.Fatalf("text: %q, %v", text.String(), err)
	}
	if err := i.Write(&js, "json"); err != nil || js.String() != "{\n  \"version\": \"v1\",\n  \"commit\": \"c\",\n  \"goVersion\": \"go1\",\n  \"platform\": \"linux/amd64\"\n}\n" {
		t.Fatalf("json: %q, %v", js.String(), err)
	}
	if err := i.Write(&text, "yaml"); err != ErrFormat {
		t.Fatalf("yaml: %v, want ErrFormat", err)
	}
}
