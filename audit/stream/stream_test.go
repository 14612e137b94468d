package stream_test

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/gantry-dev/gantry/audit"
	"github.com/gantry-dev/gantry/audit/stream"
	"github.com/gantry-dev/gantry/internal/natstest"
	"github.com/gantry-dev/gantry/internal/testenv"
)

func TestJetStream(t *testing.T) {
	env := testenv.Require(t)
	srv := natstest.Start(t, env.NATSServer, "")
	nc, err := nats.Connect(srv.URL, nats.Timeout(5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc, jetstream.WithDefaultTimeout(5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	sink, err := stream.New(ctx, js, 1, 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range []audit.Event{
		{Action: audit.ActionAdmissionBreakGlass, Actor: "alice", Target: "fn/Deployment/hello", Details: map[string]string{"secretRef": "x"}},
		{Action: "weird action!", Actor: "bob"},
	} {
		if err := sink.Record(ctx, e); err != nil {
			t.Fatal(err)
		}
	}
	st, err := js.Stream(ctx, stream.Name)
	if err != nil {
		t.Fatal(err)
	}
	msg, err := st.GetMsg(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	var e audit.Event
	if err := json.Unmarshal(msg.Data, &e); err != nil || e.Actor != "alice" || msg.Subject != "gantry.audit.admission.breakglass" || e.Details["secretRef"] != "" {
		t.Fatalf("%s %s %+v %v", msg.Subject, msg.Data, e, err)
	}
	msg2, err := st.GetMsg(ctx, 2)
	if err != nil || msg2.Subject != "gantry.audit.weird_action_" {
		t.Fatalf("%v %v", msg2, err)
	}
	// Append-only: deleting or purging is refused by the server.
	if err := st.DeleteMsg(ctx, 1); err == nil {
		t.Fatal("deleting an audit record succeeded")
	}
	if err := st.Purge(ctx); err == nil {
		t.Fatal("purging the audit stream succeeded")
	}
	if info, _ := st.Info(ctx); info.State.Msgs != 2 {
		t.Fatalf("%d records left", info.State.Msgs)
	}
}
