// Package version is what `gantry version` prints. The front binary and
// every role binary print it from here, so they cannot disagree about the
// build they belong to.
package version

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"runtime"
)

// Set at build time:
//
//	-ldflags "-X github.com/gantry-dev/gantry/internal/version.version=…
//	          -X github.com/gantry-dev/gantry/internal/version.commit=…"
var (
	version = "dev"
	commit  = "unknown"
)

// Info describes this build.
type Info struct {
	Version   string `json:"version"`
	Commit    string `json:"commit"`
	GoVersion string `json:"goVersion"`
	Platform  string `json:"platform"`
}

// Get returns the build's version information.
func Get() Info {
	return Info{Version: version, Commit: commit, GoVersion: runtime.Version(),
		Platform: runtime.GOOS + "/" + runtime.GOARCH}
}

// String is the one-line text form: gantry VERSION (commit C, GO, OS/ARCH).
func (i Info) String() string {
	return fmt.Sprintf("gantry %s (commit %s, %s, %s)", i.Version, i.Commit, i.GoVersion, i.Platform)
}

// ErrFormat is returned by Write for a format other than text or json.
var ErrFormat = errors.New("version: format must be text or json")

// Write prints i as `gantry version` does: format "text" (String and a
// newline) or "json" (indented).
func (i Info) Write(w io.Writer, format string) error {
	switch format {
	case "text":
		_, err := fmt.Fprintln(w, i)
		return err
	case "json":
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(i)
	}
	return ErrFormat
}
