package main

import (
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/spf13/cobra"
)

// outputFlag adds --output to cmd with the given formats, the first being
// the default, and returns a function that validates and returns the choice.
func outputFlag(cmd *cobra.Command, formats ...string) func() (string, error) {
	v := cmd.Flags().StringP("output", "o", formats[0], "output format: "+strings.Join(formats, ", "))
	return func() (string, error) {
		if !slices.Contains(formats, *v) {
			return "", &exitError{code: exitFailure, err: fmt.Errorf("--output %q: allowed: %s", *v, strings.Join(formats, ", "))}
		}
		return *v, nil
	}
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}
