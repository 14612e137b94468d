package dashboard

import (
	"encoding/json"
	"net/url"
	"sort"
	"strings"
	"time"

	"github.com/gantry-dev/gantry/pipelines"
)

type runRow struct {
	ID, Repo, Pusher, ShortCommit, CommitURL, Duration, Created string
	State                                                       pipelines.State
	Stages                                                      []pipelines.StageStatus
}

type stageView struct {
	Name     string
	State    pipelines.State
	Message  string
	Duration string
	Log      string
}

type functionView struct {
	Name, Image, Signature, Attestations, Failed, Reason string
}

type findingView struct {
	Function, ID, Severity, Package, Installed, Fixed, Title string
}

type runView struct {
	ID, Repo, Ref, Commit, CommitURL, Pusher, Title, Message, Duration string
	State                                                              pipelines.State
	Final                                                              bool
	Stages                                                             []stageView
	Functions                                                          []functionView
	Findings                                                           []findingView
}

func (d *Dashboard) commitURL(repo, commit string) string {
	if d.opts.CommitURL == "" || repo == "" || commit == "" {
		return ""
	}
	return strings.NewReplacer("{repo}", pathEscapeRepo(repo), "{commit}", url.PathEscape(commit)).Replace(d.opts.CommitURL)
}

func pathEscapeRepo(repo string) string {
	owner, name, _ := strings.Cut(repo, "/")
	return url.PathEscape(owner) + "/" + url.PathEscape(name)
}

func span(start, end *time.Time, now time.Time) string {
	if start == nil {
		return ""
	}
	e := now
	if end != nil {
		e = *end
	}
	return e.Sub(*start).Round(100 * time.Millisecond).String()
}

func short(commit string) string {
	if len(commit) > 12 {
		return commit[:12]
	}
	return commit
}

func (d *Dashboard) row(r *pipelines.Run, now time.Time) runRow {
	return runRow{ID: r.ID, Repo: r.Repo, Pusher: r.Pusher, ShortCommit: short(r.Commit), CommitURL: d.commitURL(r.Repo, r.Commit),
		Duration: span(r.StartedAt, r.FinishedAt, now), Created: r.CreatedAt.UTC().Format("2006-01-02 15:04:05Z"),
		State: r.State, Stages: r.Stages}
}

// pipelineState is the part of the pipeline's run output ("pipeline")
// the dashboard shows: per function its image, failures, findings and
// per-stage results. Decoded loosely: a run without it shows no images.
type pipelineState struct {
	Functions []struct {
		Spec struct {
			Name string `json:"name"`
		} `json:"spec"`
		Image       string `json:"image"`
		FailedStage string `json:"failedStage"`
		Reason      string `json:"reason"`
		Findings    []struct {
			ID, Package, Installed, Fixed, Severity, Title string
		} `json:"findings"`
		Stages []struct {
			Name, Status, Error string
		} `json:"stages"`
		Extra map[string]string `json:"extra"`
	} `json:"functions"`
}

func (d *Dashboard) view(r *pipelines.Run, now time.Time) *runView {
	v := &runView{ID: r.ID, Repo: r.Repo, Ref: r.Ref, Commit: r.Commit, CommitURL: d.commitURL(r.Repo, r.Commit),
		Pusher: r.Pusher, Title: r.Title, Message: r.Message, Duration: span(r.StartedAt, r.FinishedAt, now),
		State: r.State, Final: r.State.Final()}
	for _, s := range r.Stages {
		v.Stages = append(v.Stages, stageView{Name: s.Name, State: s.State, Message: s.Message, Duration: span(s.StartedAt, s.FinishedAt, now)})
	}
	var ps pipelineState
	if raw := r.Outputs["pipeline"]; raw != "" && json.Unmarshal([]byte(raw), &ps) == nil {
		for _, f := range ps.Functions {
			fv := functionView{Name: f.Spec.Name, Image: f.Image, Failed: f.FailedStage, Reason: f.Reason,
				Signature: "not signed", Attestations: "none"}
			for _, s := range f.Stages {
				if s.Name == "sign" {
					fv.Signature = s.Status
				}
			}
			var atts []string
			for k, val := range f.Extra {
				if strings.Contains(k, "attest") || strings.Contains(k, "signature") {
					atts = append(atts, k+": "+val)
				}
			}
			sort.Strings(atts)
			if len(atts) > 0 {
				fv.Attestations = strings.Join(atts, "; ")
			}
			v.Functions = append(v.Functions, fv)
			for _, x := range f.Findings {
				v.Findings = append(v.Findings, findingView{Function: f.Spec.Name, ID: x.ID, Severity: x.Severity,
					Package: x.Package, Installed: x.Installed, Fixed: x.Fixed, Title: x.Title})
			}
		}
	} else {
		// Without pipeline state, show any image outputs.
		keys := make([]string, 0, len(r.Outputs))
		for k := range r.Outputs {
			if strings.HasPrefix(k, "image.") {
				keys = append(keys, k)
			}
		}
		sort.Strings(keys)
		for _, k := range keys {
			v.Functions = append(v.Functions, functionView{Name: strings.TrimPrefix(k, "image."), Image: r.Outputs[k],
				Signature: "unknown", Attestations: "unknown"})
		}
	}
	return v
}
