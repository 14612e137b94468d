// Package workflowcheck holds the tests of Gantry's GitHub Actions files
// (.github/workflows and the caller example): actionlint, and the
// permissions, inputs and outputs the reusable workflow promises.
package workflowcheck
