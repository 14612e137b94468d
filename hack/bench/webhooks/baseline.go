package main

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// baseline is the least a webhook receiver can do and still answer 202
// only for a durably queued delivery: read the body (bounded), check its
// HMAC in constant time, publish it to a JetStream stream and wait for the
// ack. No replay or push guard, no run record, no branch index. It runs on
// its own embedded JetStream server, configured as Gantry's embedded one
// (same fsync setting, in-process connection), so the two differ only in
// what the receiver does.
type baseline struct {
	url   string
	close func()
}

func startBaseline(ctx context.Context, secret []byte, dir string, syncAlways bool) (*baseline, error) {
	ns, err := server.NewServer(&server.Options{ServerName: "baseline", JetStream: true, StoreDir: dir,
		SyncAlways: syncAlways, NoSigs: true, DontListen: true})
	if err != nil {
		return nil, fmt.Errorf("baseline NATS: %w", err)
	}
	ns.Start()
	if !ns.ReadyForConnections(10 * time.Second) {
		ns.Shutdown()
		return nil, fmt.Errorf("baseline NATS not ready within 10s")
	}
	nc, err := nats.Connect("", nats.InProcessServer(ns))
	if err != nil {
		ns.Shutdown()
		return nil, err
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		ns.Shutdown()
		return nil, err
	}
	sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if _, err := js.CreateStream(sctx, jetstream.StreamConfig{Name: "BASELINE", Subjects: []string{"baseline.push"},
		Storage: jetstream.FileStorage}); err != nil {
		nc.Close()
		ns.Shutdown()
		return nil, fmt.Errorf("baseline stream: %w", err)
	}
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 25<<20))
		if err != nil {
			http.Error(w, "body", http.StatusRequestEntityTooLarge)
			return
		}
		mac := hmac.New(sha256.New, secret)
		mac.Write(body)
		want := "sha256=" + hex.EncodeToString(mac.Sum(nil))
		if got := r.Header.Get("X-Hub-Signature-256"); !strings.HasPrefix(got, "sha256=") || !hmac.Equal([]byte(got), []byte(want)) {
			http.Error(w, "signature", http.StatusUnauthorized)
			return
		}
		pctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
		defer cancel()
		if _, err := js.Publish(pctx, "baseline.push", body, jetstream.WithMsgID(r.Header.Get("X-GitHub-Delivery"))); err != nil {
			http.Error(w, "queue", http.StatusServiceUnavailable)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusAccepted)
		_, _ = io.WriteString(w, `{"status":"queued"}`)
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		nc.Close()
		ns.Shutdown()
		return nil, err
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second, ReadTimeout: 30 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	return &baseline{url: "http://" + ln.Addr().String() + "/webhooks/github", close: func() {
		_ = srv.Close()
		nc.Close()
		ns.Shutdown()
		ns.WaitForShutdown()
	}}, nil
}
