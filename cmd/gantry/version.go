package main

import (
	"fmt"
	"runtime"

	"github.com/spf13/cobra"
)

// Set at build time: -ldflags "-X main.version=… -X main.commit=…".
var (
	version = "dev"
	commit  = "unknown"
)

type versionInfo struct {
	Version   string `json:"version"`
	Commit    string `json:"commit"`
	GoVersion string `json:"goVersion"`
	Platform  string `json:"platform"`
}

func init() {
	register(func(a *app) *cobra.Command {
		cmd := &cobra.Command{
			Use:   "version",
			Short: "Print the version, commit and Go version",
			Args:  cobra.NoArgs,
		}
		format := outputFlag(cmd, "text", "json")
		cmd.RunE = func(cmd *cobra.Command, _ []string) error {
			f, err := format()
			if err != nil {
				return err
			}
			v := versionInfo{Version: version, Commit: commit, GoVersion: runtime.Version(),
				Platform: runtime.GOOS + "/" + runtime.GOARCH}
			if f == "json" {
				return writeJSON(a.stdout, v)
			}
			_, err = fmt.Fprintf(a.stdout, "gantry %s (commit %s, %s, %s)\n", v.Version, v.Commit, v.GoVersion, v.Platform)
			return err
		}
		return cmd
	})
}
