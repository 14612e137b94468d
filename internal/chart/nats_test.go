package chart

import (
	"bufio"
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"sigs.k8s.io/yaml"

	"github.com/gantry-dev/gantry/audit"
	auditstream "github.com/gantry-dev/gantry/audit/stream"
	"github.com/gantry-dev/gantry/internal/natstest"
	"github.com/gantry-dev/gantry/internal/testenv"
	"github.com/gantry-dev/gantry/pipelines"
	"github.com/gantry-dev/gantry/pipelines/pipelinestest"
)

// pipelineQueue returns the queue section of the gantry.yaml the chart
// gives the receiver and the workers.
func pipelineQueue(t *testing.T, docs []map[string]any) map[string]any {
	t.Helper()
	for _, cm := range byKind(t, docs, "ConfigMap") {
		if str(cm, "metadata", "name") != "gantry-pipeline" {
			continue
		}
		var cfg map[string]any
		if err := yaml.Unmarshal([]byte(str(cm, "data", "gantry.yaml")), &cfg); err != nil {
			t.Fatal(err)
		}
		q, _ := cfg["queue"].(map[string]any)
		return q
	}
	t.Fatal("no gantry-pipeline ConfigMap rendered")
	return nil
}

// renderedNATSConf returns the nats.conf the chart deploys.
func renderedNATSConf(t *testing.T, docs []map[string]any) string {
	t.Helper()
	for _, cm := range byKind(t, docs, "ConfigMap") {
		if str(cm, "metadata", "name") == "gantry-nats" {
			if c := str(cm, "data", "nats.conf"); c != "" {
				return c
			}
		}
	}
	t.Fatal("the chart deploys no NATS (no gantry-nats ConfigMap with nats.conf)")
	return ""
}

// replaceOnce replaces old by new in s and fails unless old occurs exactly
// once: a chart change that moves what a test rewrites must break the test,
// not slip past it.
func replaceOnce(t testing.TB, s, old, new string) string {
	t.Helper()
	if n := strings.Count(s, old); n != 1 {
		t.Fatalf("nats.conf: %q occurs %d times, want 1:\n%s", old, n, s)
	}
	return strings.Replace(s, old, new, 1)
}

var clusterBlock = regexp.MustCompile(`(?ms)^cluster \{\n.*?^\}\n`)

// localNATSConf makes the chart's nats.conf run on this machine: only
// where it listens and where its files are change (client, monitoring and
// route addresses, the store dir, the certificate directory, the routes
// to the other pods). routes nil: a single server (no cluster block).
// Users and permissions stay as rendered.
func localNATSConf(t testing.TB, conf, certDir, storeDir string, clientPort, routePort int, routes []string) string {
	t.Helper()
	conf = replaceOnce(t, conf, `listen: "0.0.0.0:4222"`, fmt.Sprintf(`listen: "127.0.0.1:%d"`, clientPort))
	conf = replaceOnce(t, conf, `http: "0.0.0.0:8222"`, `http: "127.0.0.1:-1"`)
	conf = replaceOnce(t, conf, `store_dir: "/data/jetstream"`, fmt.Sprintf("store_dir: %q", storeDir))
	conf = strings.ReplaceAll(conf, `"/etc/nats/tls/`, `"`+certDir+`/`)
	if routes == nil {
		if len(clusterBlock.FindAllString(conf, -1)) != 1 {
			t.Fatalf("nats.conf: no single cluster block:\n%s", conf)
		}
		return clusterBlock.ReplaceAllString(conf, "")
	}
	conf = replaceOnce(t, conf, `listen: "0.0.0.0:6222"`, fmt.Sprintf(`listen: "127.0.0.1:%d"`, routePort))
	routesRE := regexp.MustCompile(`(?s)routes: \[\n.*?\n\s*\]`)
	if len(routesRE.FindAllString(conf, -1)) != 1 {
		t.Fatalf("nats.conf: no single routes list:\n%s", conf)
	}
	var quoted []string
	for _, r := range routes {
		quoted = append(quoted, fmt.Sprintf("%q", r))
	}
	return routesRE.ReplaceAllString(conf, "routes: ["+strings.Join(quoted, ", ")+"]")
}

// chartNATS is the chart's nats.conf running in a real nats-server, with
// test certificates for each of the chart's users.
type chartNATS struct {
	url   string
	pki   *natstest.PKI
	users map[string]natstest.Pair // receiver, worker, admin
}

// userCN are the certificate subjects the chart's cert-manager
// Certificates give each role (nats-certs.yaml).
var userCN = map[string]string{"receiver": "gantry-receiver", "worker": "gantry-worker", "admin": "gantry-nats-admin"}

func startChartNATS(t *testing.T, bin string, docs []map[string]any) *chartNATS {
	t.Helper()
	conf := renderedNATSConf(t, docs)
	pki := natstest.NewPKI(t, "gantry-nats-ca")
	srv := pki.Server("server", "127.0.0.1", "localhost")
	cn := &chartNATS{pki: pki, users: map[string]natstest.Pair{}}
	for role, name := range userCN {
		cn.users[role] = pki.Client(name)
	}
	port := natstest.FreePort(t)
	local := localNATSConf(t, conf, srv.Dir, filepath.Join(t.TempDir(), "jetstream"), port, 0, nil)
	natstest.StartConfig(t, bin, local, "POD_NAME=gantry-nats-0")
	cn.url = fmt.Sprintf("tls://127.0.0.1:%d", port)
	return cn
}

// conn returns the Connection a role's pod gets from the chart: its
// certificate files and its own reply subjects.
func (c *chartNATS) conn(role string) pipelines.Connection {
	u := c.users[role]
	return pipelines.Connection{URL: c.url, TLSCAFile: u.CA, TLSCertFile: u.Cert, TLSKeyFile: u.Key,
		InboxPrefix: "_INBOX." + role, Timeout: 3 * time.Second}
}

// client is a role's raw JetStream client that records the permission
// violations the server reports, so a refusal is told apart from a
// request that merely timed out.
type client struct {
	jetstream.JetStream
	violations chan error
}

func (c *chartNATS) js(t *testing.T, role string) *client {
	t.Helper()
	u := c.users[role]
	cl := &client{violations: make(chan error, 100)}
	nc, err := nats.Connect(c.url, nats.RootCAs(u.CA), nats.ClientCert(u.Cert, u.Key),
		nats.CustomInboxPrefix("_INBOX."+role), nats.Timeout(3*time.Second),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
			if errors.Is(err, nats.ErrPermissionViolation) {
				select {
				case cl.violations <- err:
				default:
				}
			}
		}))
	if err != nil {
		t.Fatalf("%s: connect: %v", role, err)
	}
	t.Cleanup(nc.Close)
	if cl.JetStream, err = jetstream.New(nc, jetstream.WithDefaultTimeout(5*time.Second)); err != nil {
		t.Fatal(err)
	}
	return cl
}

// refused runs do as c and reports the permission violation it caused,
// or an error if there was none (do finished, or timed out, without one).
// do's context ends at the first violation.
func (c *client) refused(ctx context.Context, do func(context.Context) error) error {
	for len(c.violations) > 0 {
		<-c.violations
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	res := make(chan error, 1)
	go func() { res <- do(ctx) }()
	select {
	case v := <-c.violations:
		cancel()
		<-res
		return v
	case err := <-res:
		select {
		case v := <-c.violations:
			return v
		default:
		}
		if err == nil {
			return errors.New("it was allowed")
		}
		return fmt.Errorf("no permission violation, but: %w", err)
	}
}

func chartDocs(t *testing.T) []map[string]any {
	return renderAll(t, Release{Name: "gantry", Namespace: "gantry-system"}, "fn-a")
}

// TestChartNATSRefusesAnonymous is the attack: a client without
// credentials (a function pod, anything else on the pod network) connects
// to the NATS the chart makes Gantry use and queues a run of its own and
// writes a run record. Before the chart deployed its own NATS it gave
// Gantry no credential at all, so the NATS it pointed at had to take
// anyone; this test failed then.
func TestChartNATSRefusesAnonymous(t *testing.T) {
	env := testenv.Require(t)
	docs := chartDocs(t)
	q := pipelineQueue(t, docs)
	if q["tlsCertFile"] == nil && q["credsFile"] == nil {
		t.Fatalf("the chart gives Gantry no NATS credential: %v", q)
	}
	cn := startChartNATS(t, env.NATSServer, docs)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := pipelines.Setup(ctx, pipelines.Options{Connection: cn.conn("admin"), Replicas: 1}, nil); err != nil {
		t.Fatal(err)
	}
	// A certificate naming the receiver, from a CA that is not the
	// chart's NATS CA (the admission webhook's, say).
	other := natstest.NewPKI(t, "another-ca").Client("gantry-receiver")
	// A certificate from the chart's CA for a subject with no user.
	admission := cn.pki.Client("gantry-admission")
	for name, opts := range map[string][]nats.Option{
		"no certificate":                      {nats.RootCAs(cn.pki.CA)},
		"no TLS config":                       nil,
		"receiver's name from another CA":     {nats.RootCAs(cn.pki.CA), nats.ClientCert(other.Cert, other.Key)},
		"chart CA certificate without a user": {nats.RootCAs(cn.pki.CA), nats.ClientCert(admission.Cert, admission.Key)},
	} {
		nc, err := nats.Connect(cn.url, append(opts, nats.Timeout(3*time.Second))...)
		if err != nil {
			t.Logf("%s: refused: %v", name, err)
			continue
		}
		js, err := jetstream.New(nc)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := js.Publish(ctx, "gantry.runs.queued", []byte(`{"runId":"20260101T000000Z-forged"}`)); err == nil {
			t.Errorf("%s: an anonymous client queued a run", name)
		}
		nc.Close()
		t.Errorf("%s: an anonymous client connected", name)
	}
	// Plaintext: the server requires TLS before anything else.
	host := strings.TrimPrefix(cn.url, "tls://")
	c, err := net.DialTimeout("tcp", host, 3*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	r := bufio.NewReader(c)
	info, err := r.ReadString('\n')
	if err != nil || !strings.Contains(info, `"tls_required":true`) {
		t.Fatalf("server INFO does not require TLS: %q, %v", info, err)
	}
	if _, err := c.Write([]byte("CONNECT {\"verbose\":false}\r\nPUB gantry.runs.queued 2\r\n{}\r\nPING\r\n")); err != nil {
		t.Fatal(err)
	}
	if reply, _ := r.ReadString('\n'); strings.HasPrefix(reply, "PONG") || strings.HasPrefix(reply, "+OK") {
		t.Errorf("plaintext client answered: %q", reply)
	}
}

// TestChartNATSRoles runs the chart's nats.conf in a real nats-server and
// tries, as each role, what it needs (it must work) and what it must not
// do (it must be refused): least privilege per role, seam-tested with the
// real queue code on both sides.
func TestChartNATSRoles(t *testing.T) {
	t.Parallel()
	env := testenv.Require(t)
	cn := startChartNATS(t, env.NATSServer, chartDocs(t))
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	setup := func(ctx context.Context, js jetstream.JetStream) error {
		_, err := auditstream.New(ctx, js, 1, time.Hour)
		return err
	}
	if err := pipelines.Setup(ctx, pipelines.Options{Connection: cn.conn("admin"), Replicas: 1}, setup); err != nil {
		t.Fatalf("admin: setup: %v", err)
	}
	open := func(role string) *pipelines.Queue {
		q, err := pipelines.Open(ctx, pipelines.Options{Connection: cn.conn(role), Provisioned: true, AckWait: 5 * time.Second, Sealer: testSealer})
		if err != nil {
			t.Fatalf("%s: open the queue: %v", role, err)
		}
		t.Cleanup(q.Close)
		return q
	}
	recv, work := open("receiver"), open("worker")
	calls := filepath.Join(t.TempDir(), "calls")
	stages, err := pipelinestest.ParseStages("record:" + calls + ":2:0s")
	if err != nil {
		t.Fatal(err)
	}
	wctx, stopWork := context.WithCancel(ctx)
	workDone := make(chan error, 1)
	go func() {
		workDone <- work.Work(wctx, pipelines.WorkerOptions{Concurrency: 1, Stages: stages, RetryDelay: time.Second, Origin: testOrigin})
	}()
	t.Cleanup(func() { stopWork(); <-workDone })

	var runID string
	recvJS, workJS := cn.js(t, "receiver"), cn.js(t, "worker")
	must := []struct {
		role, what string
		do         func(ctx context.Context) error
	}{
		{"receiver", "queue a run (replay guard, record, message, heads)", func(ctx context.Context) error {
			e, err := recv.Enqueue(ctx, pipelines.Request{DeliveryID: "roles-1", Repo: "acme/app", CloneURL: "https://github.com/acme/app.git", Ref: "refs/heads/main", Commit: strings.Repeat("a", 40)})
			runID = e.RunID
			return err
		}},
		{"receiver", "answer a redelivery as a duplicate", func(ctx context.Context) error {
			e, err := recv.Enqueue(ctx, pipelines.Request{DeliveryID: "roles-1", Repo: "acme/app", CloneURL: "https://github.com/acme/app.git", Ref: "refs/heads/main", Commit: strings.Repeat("a", 40)})
			if err == nil && (!e.Duplicate || e.RunID != runID) {
				err = fmt.Errorf("not a duplicate of %s: %+v", runID, e)
			}
			return err
		}},
		{"worker", "take the run, record its stages and logs, ack it", func(ctx context.Context) error {
			for {
				r, err := recv.Get(ctx, runID)
				if err != nil {
					return err
				}
				if r.State.Final() {
					if r.State != pipelines.StatePassed {
						return fmt.Errorf("run %s: %s %q", runID, r.State, r.Message)
					}
					return nil
				}
				select {
				case <-ctx.Done():
					return fmt.Errorf("run %s still %s: %w", runID, r.State, ctx.Err())
				case <-time.After(50 * time.Millisecond):
				}
			}
		}},
		{"receiver", "read a stage log", func(ctx context.Context) error {
			b, err := recv.StageLog(ctx, runID, "record-1")
			if err == nil && !strings.Contains(string(b), runID) {
				err = fmt.Errorf("log of record-1: %q", b)
			}
			return err
		}},
		{"receiver", "list runs", func(ctx context.Context) error {
			p, err := recv.List(ctx, pipelines.Filter{})
			if err == nil && len(p.Runs) != 1 {
				err = fmt.Errorf("listed %d runs, want 1", len(p.Runs))
			}
			return err
		}},
		{"receiver", "count the backlog", func(ctx context.Context) error {
			b, err := recv.WatchBacklog(ctx)
			if err != nil {
				return err
			}
			defer b.Close()
			_, err = b.Queued(ctx, "acme/app")
			return err
		}},
		{"receiver", "report readiness and depth", func(ctx context.Context) error {
			if err := recv.Ready(ctx); err != nil {
				return err
			}
			_, err := recv.Depth(ctx)
			return err
		}},
		{"worker", "report readiness", func(ctx context.Context) error { return work.Ready(ctx) }},
		{"receiver", "cancel a run (API)", func(ctx context.Context) error {
			e, err := recv.Enqueue(ctx, pipelines.Request{DeliveryID: "roles-2", Repo: "acme/other", CloneURL: "https://github.com/acme/other.git", Ref: "refs/heads/main", Commit: strings.Repeat("b", 40)})
			if err != nil {
				return err
			}
			_, err = recv.Cancel(ctx, e.RunID, "test")
			if errors.Is(err, pipelines.ErrFinal) {
				err = nil // the worker was quicker
			}
			return err
		}},
		{"receiver", "write an audit record", func(ctx context.Context) error {
			s, err := auditstream.Bind(ctx, recvJS)
			if err != nil {
				return err
			}
			return s.Record(ctx, audit.Event{Action: "test.roles", Actor: "test"})
		}},
		{"worker", "dead-letter a run", func(ctx context.Context) error {
			_, err := workJS.Publish(ctx, "gantry.runs.deadletter", []byte(`{}`))
			return err
		}},
	}
	for _, m := range must {
		t.Run("may/"+m.role+"/"+m.what, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
			defer cancel()
			if err := m.do(ctx); err != nil {
				t.Fatalf("%s cannot %s: %v", m.role, m.what, err)
			}
		})
	}
	if runID == "" {
		t.Fatal("no run was queued")
	}

	// What each role must not do. Each is a real request that the admin
	// user (who may) would have carried out.
	logs := func(js *client) func(context.Context) error {
		return func(ctx context.Context) error {
			o, err := js.ObjectStore(ctx, "gantry_logs")
			if err != nil {
				return err
			}
			_, err = o.PutBytes(ctx, runID+"/record-1", []byte("forged log"))
			return err
		}
	}
	kvPut := func(js *client, bucket string) func(context.Context) error {
		return func(ctx context.Context) error {
			kv, err := js.KeyValue(ctx, bucket)
			if err != nil {
				return err
			}
			_, err = kv.Put(ctx, "forged", []byte(`{}`))
			return err
		}
	}
	queueRun := func(js *client) func(context.Context) error {
		return func(ctx context.Context) error {
			_, err := js.Publish(ctx, "gantry.runs.queued", []byte(`{"runId":"`+runID+`"}`))
			return err
		}
	}
	consume := func(js *client) func(context.Context) error {
		return func(ctx context.Context) error {
			c, err := js.Consumer(ctx, "GANTRY_RUNS", "gantry-workers")
			if err != nil {
				return err
			}
			_, err = c.Next(jetstream.FetchMaxWait(time.Second))
			return err
		}
	}
	manage := func(js *client, what string) func(context.Context) error {
		return func(ctx context.Context) error {
			switch what {
			case "delete":
				return js.DeleteStream(ctx, "GANTRY_RUNS")
			case "purge":
				s, err := js.Stream(ctx, "KV_gantry_runs")
				if err != nil {
					return err
				}
				return s.Purge(ctx)
			case "create":
				_, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "FORGED", Subjects: []string{"forged.>"}})
				return err
			case "update":
				_, err := js.UpdateStream(ctx, jetstream.StreamConfig{Name: "GANTRY_RUNS", Subjects: []string{"gantry.runs.queued", "forged"}})
				return err
			case "consumer":
				// A push consumer delivers stream messages to any subject
				// it names, the work queue's too: a way around publish
				// permissions.
				_, err := js.CreateOrUpdateConsumer(ctx, "KV_gantry_runs", jetstream.ConsumerConfig{Durable: "forged"})
				return err
			case "consumer-runs":
				_, err := js.CreateOrUpdateConsumer(ctx, "GANTRY_RUNS", jetstream.ConsumerConfig{Durable: "forged"})
				return err
			}
			return fmt.Errorf("unknown %s", what)
		}
	}
	mustNot := []struct {
		role, what string
		as         *client
		do         func(ctx context.Context) error
	}{
		{"receiver", "take runs from the work queue", recvJS, consume(recvJS)},
		{"receiver", "write a stage log", recvJS, logs(recvJS)},
		{"receiver", "delete the run stream", recvJS, manage(recvJS, "delete")},
		{"receiver", "purge the run records", recvJS, manage(recvJS, "purge")},
		{"receiver", "create a stream", recvJS, manage(recvJS, "create")},
		{"receiver", "change the run stream", recvJS, manage(recvJS, "update")},
		{"receiver", "create a consumer on the work queue", recvJS, manage(recvJS, "consumer-runs")},
		{"worker", "queue a run", workJS, queueRun(workJS)},
		{"worker", "write the replay guard", workJS, kvPut(workJS, "gantry_deliveries")},
		{"worker", "write the newest-run heads", workJS, kvPut(workJS, "gantry_heads")},
		{"worker", "delete the run stream", workJS, manage(workJS, "delete")},
		{"worker", "purge the run records", workJS, manage(workJS, "purge")},
		{"worker", "create a stream", workJS, manage(workJS, "create")},
		{"worker", "change the run stream", workJS, manage(workJS, "update")},
		{"worker", "create a consumer (its deliveries could go to the work queue)", workJS, manage(workJS, "consumer")},
		{"worker", "write an audit record", workJS, func(ctx context.Context) error {
			_, err := workJS.Publish(ctx, "gantry.audit.forged", []byte(`{}`))
			return err
		}},
	}
	for _, m := range mustNot {
		t.Run("may-not/"+m.role+"/"+m.what, func(t *testing.T) {
			err := m.as.refused(ctx, m.do)
			if !errors.Is(err, nats.ErrPermissionViolation) {
				t.Fatalf("%s could %s: %v", m.role, m.what, err)
			}
			t.Logf("refused: %v", err)
		})
	}
	t.Run("may-not/worker/queue a run through the queue code", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
		defer cancel()
		if _, err := work.Enqueue(ctx, pipelines.Request{DeliveryID: "roles-worker", Repo: "acme/app", CloneURL: "https://github.com/acme/app.git", Ref: "refs/heads/main", Commit: strings.Repeat("c", 40)}); err == nil {
			t.Fatal("the worker queued a run")
		}
	})
	// Nothing forged reached the work queue: the one run is the only one.
	if p, err := recv.List(ctx, pipelines.Filter{Repo: "acme/app"}); err != nil || len(p.Runs) != 1 {
		t.Errorf("runs of acme/app after the refused attempts: %+v, %v", p.Runs, err)
	}
}

// TestChartNATSCluster runs the chart's nats.conf as the chart deploys it,
// a cluster of three nats-server processes, sets the queue up with the
// chart's replicas, then SIGKILLs the server leading the work queue while
// runs are queued and in flight: every run finishes exactly once (passed,
// its end recorded once, no lease left, nothing dead-lettered), none is
// lost, every stage execution went through the run's record and left its
// log, the queue ends empty, and only stages in flight at the kill or cut
// off by the election run again. It failed about every other time while
// a stage executed again could not store its log (TestChartNATSStageRunsAgain).
func TestChartNATSCluster(t *testing.T) {
	t.Parallel()
	env := testenv.Require(t)
	docs := chartDocs(t)
	conf := renderedNATSConf(t, docs)
	replicas := int(pipelineQueue(t, docs)["replicas"].(float64))
	if replicas != 3 {
		t.Fatalf("the chart sets queue.replicas %d, want 3", replicas)
	}
	pki := natstest.NewPKI(t, "gantry-nats-ca")
	srv := pki.Server("server", "127.0.0.1", "localhost")
	cn := &chartNATS{pki: pki, users: map[string]natstest.Pair{}}
	for role, name := range userCN {
		cn.users[role] = pki.Client(name)
	}
	var urls []string
	servers := natstest.StartCluster(t, env.NATSServer, 3, func(n natstest.Node) (string, []string) {
		urls = append(urls, fmt.Sprintf("tls://127.0.0.1:%d", n.ClientPort))
		return localNATSConf(t, conf, srv.Dir, filepath.Join(t.TempDir(), "jetstream"), n.ClientPort, n.RoutePort, n.Routes),
			[]string{fmt.Sprintf("POD_NAME=gantry-nats-%d", n.Index)}
	})
	cn.url = strings.Join(urls, ",")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	// Setup as the chart's Job does; retried until the cluster has elected
	// its JetStream meta leader.
	setupAudit := func(ctx context.Context, js jetstream.JetStream) error {
		_, err := auditstream.New(ctx, js, replicas, time.Hour)
		return err
	}
	deadline := time.Now().Add(45 * time.Second)
	for {
		// AckWait is the consumer's: acks cut off by the kill are
		// redelivered (and acked, the runs being final) after it.
		err := pipelines.Setup(ctx, pipelines.Options{Connection: cn.conn("admin"), Replicas: replicas, AckWait: 6 * time.Second}, setupAudit)
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			log, _ := os.ReadFile(servers[0].LogFile)
			t.Fatalf("setup on the cluster: %v\n%s", err, log)
		}
		time.Sleep(200 * time.Millisecond)
	}
	admin := cn.js(t, "admin")
	// queue.replicas reached every stream and bucket.
	leaders := map[string]string{}
	for _, name := range []string{"GANTRY_RUNS", "GANTRY_DEADLETTER", "KV_gantry_runs", "KV_gantry_deliveries", "KV_gantry_heads", "OBJ_gantry_logs", "GANTRY_AUDIT"} {
		s, err := admin.Stream(ctx, name)
		if err != nil {
			t.Fatalf("stream %s: %v", name, err)
		}
		info := s.CachedInfo()
		if info.Config.Replicas != replicas {
			t.Errorf("stream %s has %d replicas, want %d", name, info.Config.Replicas, replicas)
		}
		if info.Cluster != nil {
			leaders[name] = info.Cluster.Leader
		}
	}

	// The receiver's and the workers' log, to a file; on failure the
	// lines about runs not finished are shown.
	logPath := filepath.Join(t.TempDir(), "gantry.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { logFile.Close() })
	workLog := slog.New(slog.NewTextHandler(logFile, nil))
	var registries []*prometheus.Registry
	open := func(role string) *pipelines.Queue {
		t.Helper()
		c := cn.conn(role)
		c.Timeout = 5 * time.Second
		reg := prometheus.NewRegistry()
		registries = append(registries, reg)
		c.Logger = workLog.With("q", fmt.Sprintf("%s-%d", role, len(registries)))
		// MaxDeliver is the default: attempts count executions, and an
		// election costs a run at most the one cut off.
		q, err := pipelines.Open(ctx, pipelines.Options{Connection: c, Provisioned: true, Replicas: replicas, AckWait: 6 * time.Second, Registerer: reg, Sealer: testSealer})
		if err != nil {
			t.Fatalf("%s: open: %v", role, err)
		}
		t.Cleanup(q.Close)
		return q
	}
	recv := open("receiver")
	const runs = 24
	var ids []string
	for i := range runs {
		e, err := recv.Enqueue(ctx, pipelines.Request{DeliveryID: fmt.Sprintf("cluster-%d", i), Repo: "acme/app", CloneURL: "https://github.com/acme/app.git",
			Ref: fmt.Sprintf("refs/heads/b%d", i), Commit: fmt.Sprintf("%040x", i+1)})
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, e.RunID)
	}
	calls := filepath.Join(t.TempDir(), "calls")
	for range 2 {
		w := open("worker")
		st, err := pipelinestest.ParseStages("record:" + calls + ":2:150ms")
		if err != nil {
			t.Fatal(err)
		}
		wctx, stop := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() {
			done <- w.Work(wctx, pipelines.WorkerOptions{Concurrency: 2, Stages: st, RetryDelay: time.Second, Origin: testOrigin})
		}()
		t.Cleanup(func() { stop(); <-done })
	}
	// Kill the server leading the work queue once stages run.
	for {
		c, _ := pipelinestest.ReadCalls(calls)
		if len(c) >= 4 {
			break
		}
		if ctx.Err() != nil {
			t.Fatal("no stage started")
		}
		time.Sleep(10 * time.Millisecond)
	}
	victim := 0
	if _, err := fmt.Sscanf(leaders["GANTRY_RUNS"], "gantry-nats-%d", &victim); err != nil {
		t.Fatalf("leader of GANTRY_RUNS %q: %v", leaders["GANTRY_RUNS"], err)
	}
	servers[victim].Kill()
	killedAt := time.Now()
	atKill, _ := pipelinestest.ReadCalls(calls)
	lastLog := time.Now()
	inFlight := 0
	for _, c := range atKill {
		if c.Starts > c.Dones {
			inFlight++
		}
	}
	t.Logf("killed gantry-nats-%d (leader of GANTRY_RUNS) with %d stage calls recorded, %d in flight", victim, len(atKill), inFlight)

	records := map[string]*pipelines.Run{}
	for _, id := range ids {
		for {
			r, err := recv.Get(ctx, id)
			if err == nil && r.State.Final() {
				if r.State != pipelines.StatePassed || len(r.Stages) != 2 || r.Lease != nil {
					t.Fatalf("run %s: %s %q lease %+v, stages %+v", id, r.State, r.Message, r.Lease, r.Stages)
				}
				records[id] = r
				break
			}
			if ctx.Err() != nil {
				t.Fatalf("run %s not finished after the kill (last: %+v, %v); its log lines:\n%s", id, r, err, grepFile(t, logPath, id, 40))
			}
			if time.Since(lastLog) > 5*time.Second {
				lastLog = time.Now()
				if r != nil {
					t.Logf("waiting for run %s: %s %q attempts %d, %v", id, r.State, r.Message, r.Attempts, err)
				} else {
					t.Logf("waiting for run %s: %v", id, err)
				}
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	final, err := pipelinestest.ReadCalls(calls)
	if err != nil {
		t.Fatal(err)
	}
	extra, executions := 0, 0
	for _, id := range ids {
		r := records[id]
		executions = max(executions, r.Attempts)
		for i := 1; i <= 2; i++ {
			name := fmt.Sprintf("record-%d", i)
			key := id + " " + name
			c := final[key]
			if c.Dones < 1 {
				t.Errorf("%s never completed: %+v", key, c)
			}
			if c.Starts > 1 {
				extra += c.Starts - 1
			}
			// Every execution of the stage was recorded under the run's
			// lease before it began (a start update may also have been
			// recorded for an execution the election cut off).
			if s := r.Stage(name); s == nil || s.State != pipelines.StatePassed || c.Starts > s.Attempts {
				t.Errorf("%s: executed %d times, record %+v", key, c.Starts, s)
			}
			// The log of the execution recorded, also when the stage
			// ran more than once.
			var b []byte
			for try := 0; ; try++ {
				lctx, lcancel := context.WithTimeout(ctx, 5*time.Second)
				b, err = recv.StageLog(lctx, id, name)
				lcancel()
				if err == nil || try == 5 {
					break
				}
				t.Logf("%s: read log: %v (trying again)", key, err)
			}
			if err != nil || !strings.Contains(string(b), "stage "+name+" of run "+id) {
				t.Errorf("%s: log %q, %v; the run's log lines:\n%s", key, b, err, grepFile(t, logPath, id, 30))
			}
		}
	}
	// Each run's end was recorded once, by one worker: the finished
	// counters of all workers add up to the runs, all passed.
	finished := map[string]float64{}
	for _, reg := range registries {
		mfs, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		for _, mf := range mfs {
			if mf.GetName() != "gantry_runs_finished_total" {
				continue
			}
			for _, m := range mf.GetMetric() {
				for _, l := range m.GetLabel() {
					if l.GetName() == "state" {
						finished[l.GetValue()] += m.GetCounter().GetValue()
					}
				}
			}
		}
	}
	if len(finished) != 1 || finished[string(pipelines.StatePassed)] != runs {
		t.Errorf("runs finished, by state, over all workers: %v; want %d passed", finished, runs)
	}
	dead, err := admin.Stream(ctx, "GANTRY_DEADLETTER")
	if err != nil {
		t.Fatal(err)
	}
	if n := dead.CachedInfo().State.Msgs; n != 0 {
		t.Errorf("%d runs dead-lettered", n)
	}
	// Repeated: the stages in flight at the kill, and at most one per
	// worker slot (4) whose result write fell into the leader election
	// (the worker hands the run back and it resumes at that stage).
	if extra > inFlight+4 {
		t.Errorf("%d repeated stage executions for %d in flight at the kill", extra, inFlight)
	}
	t.Logf("all %d runs final %s after the kill", runs, time.Since(killedAt).Round(time.Millisecond))
	for {
		dctx, dcancel := context.WithTimeout(ctx, 5*time.Second)
		n, err := recv.Depth(dctx)
		dcancel()
		if err == nil && n == 0 {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("queue not empty: %d, %v", n, err)
		}
		if time.Since(lastLog) > 5*time.Second {
			lastLog = time.Now()
			ci, cerr := admin.Consumer(ctx, "GANTRY_RUNS", "gantry-workers")
			if cerr != nil {
				t.Logf("depth %d (%v); consumer: %v", n, err, cerr)
			} else {
				info := ci.CachedInfo()
				t.Logf("depth %d (%v); consumer: pending %d, ack pending %d, redelivered %d, waiting %d", n, err, info.NumPending, info.NumAckPending, info.NumRedelivered, info.NumWaiting)
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Logf("%d runs passed once each on 2 of 3 servers; %d stage executions repeated (%d were in flight); at most %d executions of a run", runs, extra, inFlight, executions)
}

// The runs of these tests are sealed like the receiver's, so that the
// worker role executes them (every repository allowed).
var (
	testSealer = pipelines.NewSealer(ed25519.NewKeyFromSeed(make([]byte, ed25519.SeedSize)))
	testOrigin = &pipelines.OriginPolicy{Keys: []ed25519.PublicKey{testSealer.Public()}, Allowed: func(string, string) string { return "" }}
)

// grepFile returns the last n lines of file that contain s.
func grepFile(t *testing.T, file, s string, n int) string {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		return err.Error()
	}
	var out []string
	for _, l := range strings.Split(string(b), "\n") {
		if strings.Contains(l, s) {
			out = append(out, l)
		}
	}
	return strings.Join(out[len(out)-min(n, len(out)):], "\n")
}
