package pipelines

import "context"

// PublishRaw puts arbitrary bytes on the work queue (tests of bad input).
func (q *Queue) PublishRaw(ctx context.Context, b []byte) error {
	_, err := q.js.Publish(ctx, subjectRuns, b)
	return err
}

// DeadLetters counts the records in the dead-letter stream.
func (q *Queue) DeadLetters(ctx context.Context) int {
	s, err := q.js.Stream(ctx, streamDeadLetter)
	if err != nil {
		return -1
	}
	info, err := s.Info(ctx)
	if err != nil {
		return -1
	}
	return int(info.State.Msgs)
}
