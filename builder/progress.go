package builder

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"strings"
	"sync"

	"github.com/moby/buildkit/client"
	"github.com/moby/buildkit/util/progress/progressui"
	digest "github.com/opencontainers/go-digest"
)

// Progress receives a build's progress. Out and Events may be nil.
type Progress struct {
	// Out gets the progress display, by default the text
	// `buildctl --progress=plain` prints: one line per step start, its
	// output, timings, and the error summary (store it with the run).
	Out io.Writer
	// Mode is the display written to Out, as buildctl's --progress:
	// "plain" (the default when empty), "auto" (tty when Out is a
	// terminal, else plain), "tty", "rawjson" (one JSON status per line).
	Mode string
	// Events gets every raw BuildKit status update (vertices, their
	// status, logs, warnings) in order, from one goroutine, e.g. to store
	// with the pipeline run. It must not block for long: the build waits.
	Events func(*client.SolveStatus)
}

// tailLines is how many output lines of a failed step are kept for the
// error message.
const tailLines = 20

// maxTailBytes bounds what is kept per step, whatever its line lengths.
const maxTailBytes = 16 << 10

// tracker remembers vertex names and the last lines of each vertex's
// output, so that a failed step can be named and its output quoted.
type tracker struct {
	mu    sync.Mutex
	names map[digest.Digest]string
	logs  map[digest.Digest][]byte
	warns []*client.VertexWarning
}

func newTracker() *tracker {
	return &tracker{names: map[digest.Digest]string{}, logs: map[digest.Digest][]byte{}}
}

func (t *tracker) add(s *client.SolveStatus) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, v := range s.Vertexes {
		if v.Name != "" {
			t.names[v.Digest] = v.Name
		}
	}
	for _, l := range s.Logs {
		b := append(t.logs[l.Vertex], l.Data...)
		if len(b) > maxTailBytes {
			b = append([]byte(nil), b[len(b)-maxTailBytes:]...)
		}
		t.logs[l.Vertex] = b
	}
	t.warns = append(t.warns, s.Warnings...)
}

func (t *tracker) name(d digest.Digest) string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.names[d]
}

// tail returns the last lines of d's output.
func (t *tracker) tail(d digest.Digest) []string {
	t.mu.Lock()
	b := t.logs[d]
	t.mu.Unlock()
	lines := strings.Split(strings.TrimRight(string(bytes.ReplaceAll(b, []byte("\r\n"), []byte("\n"))), "\n"), "\n")
	if len(lines) == 1 && lines[0] == "" {
		return nil
	}
	if len(lines) > tailLines {
		lines = lines[len(lines)-tailLines:]
	}
	return lines
}

// newDisplay validates p's mode and opens its display; nil when Out is nil.
func (p Progress) newDisplay() (*progressui.Display, error) {
	if p.Out == nil {
		return nil, nil
	}
	mode := progressui.DisplayMode(p.Mode)
	switch mode {
	case "":
		mode = progressui.PlainMode
	case progressui.PlainMode, progressui.AutoMode, progressui.TtyMode, progressui.RawJSONMode:
	default:
		return nil, fmt.Errorf("progress mode %q (allowed: plain, auto, tty, rawjson)", p.Mode)
	}
	d, err := progressui.NewDisplay(p.Out, mode)
	if err != nil {
		return nil, fmt.Errorf("progress mode %s: %w", mode, err)
	}
	return &d, nil
}

// pump reads the solve's status channel until it is closed, feeding the
// tracker, the display and the event sink. It returns when every consumer
// has seen the last update.
func pump(in <-chan *client.SolveStatus, t *tracker, d *progressui.Display, events func(*client.SolveStatus)) (wait func()) {
	var wg sync.WaitGroup
	var plain chan *client.SolveStatus
	if d != nil {
		// The display is given a context that is never cancelled: it stops
		// when the channel closes, after printing the final summary, even
		// when the build was cancelled.
		plain = make(chan *client.SolveStatus, 64)
		wg.Go(func() { _, _ = d.UpdateFrom(context.Background(), plain) })
	}
	wg.Go(func() {
		for s := range in {
			t.add(s)
			if events != nil {
				events(s)
			}
			if plain != nil {
				plain <- s
			}
		}
		if plain != nil {
			close(plain)
		}
	})
	return wg.Wait
}
