package pipelines

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/gantry-dev/gantry/internal/files"
)

// Connection says how to reach JetStream. With URL empty an embedded NATS
// server with JetStream is started on DataDir; otherwise URL names an
// external NATS server or cluster. Everything after the connection is the
// same code path.
type Connection struct {
	// URL of an external NATS server (nats://host:4222, tls://…); several,
	// comma-separated, for a cluster. Empty: embedded server.
	URL string
	// CredsFile is a NATS credentials file (JWT + NKey seed).
	CredsFile string
	// TokenFile holds a NATS auth token. With the embedded server and
	// EmbeddedListen set, the embedded server requires this token.
	TokenFile string
	// TLSCAFile, TLSCertFile, TLSKeyFile: server CA and client certificate
	// for an external server.
	TLSCAFile, TLSCertFile, TLSKeyFile string
	// DataDir holds the embedded server's JetStream store.
	DataDir string
	// EmbeddedListen, when set (host:port), lets other processes (gantry
	// worker) connect to the embedded server. Empty: in-process only, no
	// port is opened.
	EmbeddedListen string
	// SyncAlways makes the embedded server fsync every write. Without it a
	// killed process loses nothing (the OS has the data) but a power loss
	// may lose the last seconds.
	SyncAlways bool
	// Timeout bounds connecting and each JetStream request.
	Timeout time.Duration
	// InboxPrefix replaces _INBOX as the prefix of this client's reply
	// subjects, so that a NATS user may subscribe to its own replies only
	// (its permissions allow "<prefix>.>", not every user's "_INBOX.>").
	// Empty: _INBOX.
	InboxPrefix string
	// Logger receives the embedded server's log lines (at debug for its
	// notices). Nil: discarded.
	Logger *slog.Logger
}

// conn is an open connection, and the embedded server if there is one.
type conn struct {
	nc       *nats.Conn
	embedded *server.Server
	lock     *os.File // the data dir lock of the embedded server
}

func (c *conn) close() {
	if c.nc != nil {
		_ = c.nc.Drain()
		// Drain is asynchronous; wait (bounded) so acks in flight land
		// before an embedded server goes away.
		deadline := time.Now().Add(5 * time.Second)
		for !c.nc.IsClosed() && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
		c.nc.Close()
	}
	if c.embedded != nil {
		c.embedded.Shutdown()
		c.embedded.WaitForShutdown()
	}
	if c.lock != nil {
		c.lock.Close()
	}
}

// ConnectExternal opens a JetStream client on the external NATS server of
// cfg (URL must be set), for a process that publishes beside the queue
// without opening it: the admission webhook's audit records. close drains
// and closes the connection.
func ConnectExternal(ctx context.Context, cfg Connection) (js jetstream.JetStream, close func(), err error) {
	if cfg.URL == "" {
		return nil, nil, errors.New("queue: no external NATS server (queue.natsURL)")
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 10 * time.Second
	}
	c, err := dial(ctx, cfg)
	if err != nil {
		return nil, nil, err
	}
	js, err = jetstream.New(c.nc, jetstream.WithDefaultTimeout(cfg.Timeout))
	if err != nil {
		c.close()
		return nil, nil, fmt.Errorf("queue: jetstream: %w", err)
	}
	return js, c.close, nil
}

func dial(ctx context.Context, cfg Connection) (*conn, error) {
	if cfg.Timeout <= 0 {
		cfg.Timeout = 10 * time.Second
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	opts := []nats.Option{
		nats.Name("gantry"),
		nats.Timeout(cfg.Timeout),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(500 * time.Millisecond),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil {
				log.Warn("queue connection lost; reconnecting", "err", err)
			}
		}),
		nats.ReconnectHandler(func(*nats.Conn) { log.Info("queue connection restored") }),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
			// Permission violations land here: the NATS user lacks a grant.
			log.Warn("queue: NATS error", "err", err)
		}),
	}
	if cfg.InboxPrefix != "" {
		opts = append(opts, nats.CustomInboxPrefix(cfg.InboxPrefix))
	}
	token, err := readSecretFile(cfg.TokenFile, "queue token file")
	if err != nil {
		return nil, err
	}
	c := &conn{}
	if cfg.URL == "" {
		ns, lock, err := startEmbedded(cfg, token, log)
		if err != nil {
			return nil, err
		}
		c.embedded, c.lock = ns, lock
		opts = append(opts, nats.InProcessServer(ns))
		if token != "" {
			opts = append(opts, nats.Token(token))
		}
	} else {
		if token != "" {
			opts = append(opts, nats.Token(token))
		}
		if cfg.CredsFile != "" {
			opts = append(opts, nats.UserCredentials(cfg.CredsFile))
		}
		if cfg.TLSCAFile != "" {
			opts = append(opts, nats.RootCAs(cfg.TLSCAFile))
		}
		if cfg.TLSCertFile != "" || cfg.TLSKeyFile != "" {
			opts = append(opts, nats.ClientCert(cfg.TLSCertFile, cfg.TLSKeyFile))
		}
	}
	// nats.Connect has its own timeout but no context: honour ctx too.
	type result struct {
		nc  *nats.Conn
		err error
	}
	ch := make(chan result, 1)
	go func() {
		nc, err := nats.Connect(cfg.URL, opts...)
		ch <- result{nc, err}
	}()
	select {
	case r := <-ch:
		if r.err != nil {
			c.close()
			where := "embedded NATS server"
			if cfg.URL != "" {
				where = "NATS at " + redactURL(cfg.URL)
			}
			return nil, fmt.Errorf("queue: connect to %s: %w (check queue.natsURL, credentials and TLS files)", where, r.err)
		}
		c.nc = r.nc
		return c, nil
	case <-ctx.Done():
		go func() {
			if r := <-ch; r.nc != nil {
				r.nc.Close()
			}
			c.close()
		}()
		return nil, fmt.Errorf("queue: connect: %w", ctx.Err())
	}
}

func startEmbedded(cfg Connection, token string, log *slog.Logger) (_ *server.Server, lock *os.File, err error) {
	if cfg.DataDir == "" {
		return nil, nil, errors.New("queue: the embedded NATS server needs a data dir (--data-dir or queue.dataDir)")
	}
	dir, err := filepath.Abs(cfg.DataDir)
	if err != nil {
		return nil, nil, fmt.Errorf("queue: data dir: %w", err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, nil, fmt.Errorf("queue: data dir: %w", err)
	}
	opts := &server.Options{
		ServerName: "gantry",
		JetStream:  true,
		StoreDir:   dir,
		SyncAlways: cfg.SyncAlways,
		NoSigs:     true,
		DontListen: true,
	}
	if cfg.EmbeddedListen != "" {
		host, port, err := net.SplitHostPort(cfg.EmbeddedListen)
		if err != nil {
			return nil, nil, fmt.Errorf("queue.embeddedListen %q: %w", cfg.EmbeddedListen, err)
		}
		p, err := strconv.Atoi(port)
		if err != nil {
			return nil, nil, fmt.Errorf("queue.embeddedListen %q: bad port", cfg.EmbeddedListen)
		}
		if token == "" {
			return nil, nil, errors.New("queue.embeddedListen needs queue.tokenFile: an open NATS port without auth would let anyone queue or read runs")
		}
		opts.DontListen = false
		opts.Host, opts.Port = host, p
		opts.Authorization = token
	}
	// Two servers on one store would corrupt it: hold an exclusive lock
	// for the life of the process (the kernel drops it if we are killed).
	lock, err = os.OpenFile(filepath.Join(dir, "gantry.lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, nil, fmt.Errorf("queue: data dir lock: %w", err)
	}
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		lock.Close()
		return nil, nil, fmt.Errorf("queue: data dir %s is in use by another gantry process (%v); give each its own --data-dir, or point workers at one NATS with --nats-url", dir, err)
	}
	ns, err := server.NewServer(opts)
	if err != nil {
		lock.Close()
		return nil, nil, fmt.Errorf("queue: embedded NATS server: %w", err)
	}
	ns.SetLoggerV2(natsLogger{log}, false, false, false)
	ns.Start()
	if !ns.ReadyForConnections(cfg.Timeout) {
		ns.Shutdown()
		ns.WaitForShutdown()
		lock.Close()
		return nil, nil, fmt.Errorf("queue: embedded NATS server on %s not ready within %s (is another gantry using this data dir?)", dir, cfg.Timeout)
	}
	return ns, lock, nil
}

// readSecretFile reads a one-line secret; empty path → empty secret.
func readSecretFile(path, what string) (string, error) {
	if path == "" {
		return "", nil
	}
	b, err := files.ReadSecret(path, 64<<10)
	if err != nil {
		return "", fmt.Errorf("%s: %w", what, err)
	}
	return string(b), nil
}

// redactURL drops user info from a NATS URL list for error messages.
func redactURL(s string) string {
	parts := strings.Split(s, ",")
	for i, p := range parts {
		if at := strings.LastIndex(p, "@"); at >= 0 {
			if scheme := strings.Index(p, "://"); scheme >= 0 && scheme < at {
				parts[i] = p[:scheme+3] + "REDACTED@" + p[at+1:]
			}
		}
	}
	return strings.Join(parts, ",")
}

// natsLogger sends the embedded server's log to slog. Its notices are
// chatty start-up lines, so they go to debug.
type natsLogger struct{ log *slog.Logger }

func (l natsLogger) Noticef(f string, v ...any) { l.log.Debug("nats: " + fmt.Sprintf(f, v...)) }
func (l natsLogger) Warnf(f string, v ...any)   { l.log.Warn("nats: " + fmt.Sprintf(f, v...)) }
func (l natsLogger) Fatalf(f string, v ...any)  { l.log.Error("nats: " + fmt.Sprintf(f, v...)) }
func (l natsLogger) Errorf(f string, v ...any)  { l.log.Error("nats: " + fmt.Sprintf(f, v...)) }
func (l natsLogger) Debugf(f string, v ...any)  { l.log.Debug("nats: " + fmt.Sprintf(f, v...)) }
func (l natsLogger) Tracef(f string, v ...any)  {}
