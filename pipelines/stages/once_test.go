package stages

import (
	"bytes"
	"context"
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/gantry-dev/gantry/pipelines"
)

// scripted is a stage whose result is given: it exercises RunOnce's
// bookkeeping, not a real step.
type scripted struct {
	name  string
	out   map[string]string
	err   error
	panic bool
	saw   *pipelines.Run
}

func (s *scripted) Name() string { return s.name }
func (s *scripted) Run(_ context.Context, run pipelines.Run, log io.Writer) (map[string]string, error) {
	s.saw = &run
	io.WriteString(log, "line one\npartial")
	if s.panic {
		panic("boom")
	}
	return s.out, s.err
}

func TestRunOnce(t *testing.T) {
	cases := []struct {
		name      string
		second    *scripted
		wantState pipelines.State
		wantStage pipelines.State
	}{
		{"pass", &scripted{name: "b", out: map[string]string{"k2": "v2"}}, pipelines.StatePassed, pipelines.StatePassed},
		{"verdict", &scripted{name: "b", err: pipelines.Fail("gate")}, pipelines.StateFailed, pipelines.StateFailed},
		{"malfunction", &scripted{name: "b", err: errors.New("daemon gone")}, pipelines.StateError, pipelines.StateError},
		{"panic", &scripted{name: "b", panic: true}, pipelines.StateError, pipelines.StateError},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			first := &scripted{name: "a", out: map[string]string{"k1": "v1"}}
			third := &scripted{name: "c"}
			var progress bytes.Buffer
			run, err := RunOnce(context.Background(), &pipelines.Run{ID: "r"}, []pipelines.Stage{first, c.second, third}, &progress)
			if run.State != c.wantState || run.Stage("b").State != c.wantStage {
				t.Fatalf("run %s, stage b %s; want %s, %s (err %v)", run.State, run.Stage("b").State, c.wantState, c.wantStage, err)
			}
			if (err == nil) != (c.wantState == pipelines.StatePassed) {
				t.Errorf("err %v for state %s", err, run.State)
			}
			if c.second.saw == nil || c.second.saw.Outputs["k1"] != "v1" {
				t.Errorf("stage b did not see stage a's outputs: %+v", c.second.saw)
			}
			if c.wantState == pipelines.StatePassed {
				if third.saw == nil || run.Outputs["k2"] != "v2" {
					t.Errorf("outputs %v, third ran %v", run.Outputs, third.saw != nil)
				}
			} else {
				if third.saw != nil || run.Stage("c").State != pipelines.StateCancelled {
					t.Errorf("stage c ran after a %s: %+v", c.wantState, run.Stage("c"))
				}
				if !strings.Contains(run.Message, "stage b") {
					t.Errorf("message %q", run.Message)
				}
			}
			if !strings.Contains(progress.String(), "    a | line one\n    a | partial\n") {
				t.Errorf("progress not line-prefixed:\n%s", progress.String())
			}
		})
	}
}

func TestRunOnceCancelled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	st := &scripted{name: "a", err: context.Canceled}
	run, err := RunOnce(ctx, &pipelines.Run{ID: "r"}, []pipelines.Stage{st}, io.Discard)
	if run.State != pipelines.StateCancelled || err == nil {
		t.Fatalf("state %s, err %v", run.State, err)
	}
}

func TestPrefixWriter(t *testing.T) {
	var out bytes.Buffer
	w := &prefixWriter{w: &out, prefix: "[f] "}
	for _, s := range []string{"a", "b\nc\n", "", "d\n\ne"} {
		if n, err := w.Write([]byte(s)); n != len(s) || err != nil {
			t.Fatalf("Write(%q) = %d, %v", s, n, err)
		}
	}
	w.Flush()
	want := "[f] ab\n[f] c\n[f] d\n[f] \n[f] e\n"
	if out.String() != want {
		t.Fatalf("got %q, want %q", out.String(), want)
	}
}

func TestStateRoundTrip(t *testing.T) {
	st := &state{Source: "gantry.yaml", Functions: []*fnState{
		{Image: "r/a@sha256:1", FailedStage: "", Deployed: []string{"Deployment ns/a"}},
		{FailedStage: "scan", Reason: "gate"},
	}}
	st.Functions[0].Spec.Name, st.Functions[1].Spec.Name = "a", "b"
	st.Functions[1].Spec.Context, st.Functions[1].Spec.Dockerfile = "fn/b", "Build.Dockerfile"
	out, err := st.outputs()
	if err != nil {
		t.Fatal(err)
	}
	if out[OutputImagePrefix+"a"] != "r/a@sha256:1" || out[OutputImagePrefix+"b"] != "" {
		t.Errorf("image outputs %v", out)
	}
	res, err := State(pipelines.Run{Outputs: out})
	if err != nil {
		t.Fatal(err)
	}
	if len(res) != 2 || res[1].FailedStage != "scan" || res[1].Dockerfile != "fn/b/Build.Dockerfile" || res[0].Dockerfile != "Dockerfile" {
		t.Errorf("results %+v", res)
	}
	if _, err := State(pipelines.Run{}); err == nil {
		t.Error("a run without state decoded")
	}
	if _, err := State(pipelines.Run{Outputs: map[string]string{OutputState: "{"}}); err == nil {
		t.Error("a corrupt state decoded")
	}
}
