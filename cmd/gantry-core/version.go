package main

import (
	"github.com/spf13/cobra"

	"github.com/gantry-dev/gantry/internal/version"
)

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
			return version.Get().Write(a.stdout, f)
		}
		return cmd
	})
}
