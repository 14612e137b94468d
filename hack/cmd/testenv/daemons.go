package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/gantry-dev/gantry/internal/testenv"
)

// daemon is one long-running process of the test environment.
type daemon struct {
	name  string
	argv  []string
	env   []string
	ready func(ctx context.Context) error
}

// order matters: later daemons depend on earlier ones.
//
// Two API servers share etcd under different prefixes, so they are two
// clusters. The first runs no controllers: deploy tests play the
// Deployment controller there (they write Deployment status themselves).
// The second ("controllers") has a kube-controller-manager whose
// Deployment and ReplicaSet controllers create ReplicaSets and Pods as
// their own ServiceAccounts, for tests of what a controller writes.
var daemonNames = []string{"registry", "buildkitd", "etcd", "kube-apiserver", "kube-apiserver-controllers", "kube-controller-manager"}

func (r *rig) pidFile(name string) string { return filepath.Join(r.state, "run", name+".pid") }
func (r *rig) logFile(name string) string { return filepath.Join(r.state, "logs", name+".log") }

// up makes the environment whole: when every daemon of the state dir is
// alive and the env file exists it returns at once; otherwise it stops
// whatever is left and starts everything afresh on new free ports.
func (r *rig) up() error {
	start := time.Now()
	t, err := r.install()
	if err != nil {
		return err
	}
	// Without kube-controller-manager (`up demo` on a machine that has not
	// built it) the controllers' cluster is left out: the demo does not
	// use it, and a later `up` (make test) builds it and starts it all.
	wanted := daemonNames
	if t.kubeControllerManager == "" {
		wanted = slices.DeleteFunc(slices.Clone(daemonNames), func(n string) bool {
			return n == "kube-apiserver-controllers" || n == "kube-controller-manager"
		})
	}
	if r.allAlive(wanted) {
		if env, err := testenv.Load(r.envFile()); err == nil {
			// The daemons stay; tool paths are refreshed, so a tool added
			// to (or bumped in) the install step reaches the env file
			// without a restart.
			if t.setPaths(env) {
				if err := env.Write(r.envFile()); err != nil {
					return err
				}
				say("tool paths updated in %s", r.envFile())
			}
			say("already running (%s); env: %s", r.state, r.envFile())
			return nil
		}
	}
	if err := r.down(); err != nil {
		return err
	}
	for _, d := range []string{"run", "logs"} {
		if err := os.MkdirAll(filepath.Join(r.state, d), 0o755); err != nil {
			return err
		}
	}
	// Data of the previous run is dropped (ports change with each start),
	// except BuildKit's cache, which keeps warm builds fast.
	for _, d := range []string{"registry", "etcd", "kube", "base"} {
		if err := os.RemoveAll(filepath.Join(r.state, d)); err != nil {
			return err
		}
	}
	ports, err := freePorts(6)
	if err != nil {
		return err
	}
	regPort, etcdPort, etcdPeerPort, apiPort := ports[0], ports[1], ports[2], ports[3]
	ctlAPIPort, kcmPort := ports[4], ports[5]
	env := &testenv.Env{
		Dir:           r.state,
		Registry:      "127.0.0.1:" + strconv.Itoa(regPort),
		Etcd:          "http://127.0.0.1:" + strconv.Itoa(etcdPort),
		KubeAPIServer: "https://127.0.0.1:" + strconv.Itoa(apiPort),
	}
	t.setPaths(env)

	regd, err := r.registryDaemon(t, env.Registry)
	if err != nil {
		return err
	}
	bkd, addr, err := r.buildkitDaemon(t, env.Registry)
	if err != nil {
		return err
	}
	env.BuildkitAddr = addr
	etcdd := r.etcdDaemon(t, etcdPort, etcdPeerPort)
	pki, err := writePKI(filepath.Join(r.state, "kube"))
	if err != nil {
		return err
	}
	apid, kubeconfig, err := r.apiServerDaemon(t, "kube-apiserver", apiPort, env.Etcd, "/registry", pki)
	if err != nil {
		return err
	}
	env.Kubeconfig = kubeconfig
	daemons := []*daemon{regd, bkd, etcdd, apid}
	if t.kubeControllerManager != "" {
		ctlAPId, ctlKubeconfig, err := r.apiServerDaemon(t, "kube-apiserver-controllers", ctlAPIPort, env.Etcd, "/registry-controllers", pki)
		if err != nil {
			return err
		}
		env.ControllersKubeconfig = ctlKubeconfig
		daemons = append(daemons, ctlAPId, r.controllerManagerDaemon(t, kcmPort, ctlAPIPort, ctlKubeconfig, pki))
	} else {
		say("kube-controller-manager not built: its cluster is not started (the demo does not use it; make test starts it)")
	}

	for _, d := range daemons {
		if err := r.start(d); err != nil {
			_ = r.down()
			return err
		}
	}
	if env.BaseImage, err = r.buildBaseImage(t, env); err != nil {
		_ = r.down()
		return err
	}
	if err := env.Write(r.envFile()); err != nil {
		return err
	}
	say("up in %s; env: %s", time.Since(start).Round(10*time.Millisecond), r.envFile())
	return nil
}

// setPaths writes the tool paths into env and reports whether any changed.
func (t *tools) setPaths(env *testenv.Env) bool {
	changed := false
	for _, p := range []struct {
		dst *string
		v   string
	}{
		{&env.Buildctl, t.buildctl}, {&env.Kubectl, t.kubectl}, {&env.Cosign, t.cosign}, {&env.Cosign3, t.cosign3},
		{&env.NATSServer, t.natsServer}, {&env.KubeAPIBin, t.kubeAPIServer}, {&env.EtcdBin, t.etcd},
		{&env.Trivy, t.trivy}, {&env.KubeControllerManagerBin, t.kubeControllerManager},
	} {
		if *p.dst != p.v {
			*p.dst, changed = p.v, true
		}
	}
	return changed
}

// start launches d detached (own session, stdin from /dev/null, output to
// its log file), records its pid and waits until it is ready.
func (r *rig) start(d *daemon) error {
	logf, err := os.OpenFile(r.logFile(d.name), os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	defer logf.Close()
	cmd := exec.Command(d.argv[0], d.argv[1:]...)
	cmd.Env = append(os.Environ(), d.env...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	began := time.Now()
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("starting %s: %w", d.name, err)
	}
	if err := os.WriteFile(r.pidFile(d.name), []byte(strconv.Itoa(cmd.Process.Pid)), 0o644); err != nil {
		return err
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()

	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	var lastErr error
	for {
		select {
		case err := <-exited:
			return r.startFailure(d, fmt.Errorf("exited during start-up: %v", err))
		case <-ctx.Done():
			return r.startFailure(d, fmt.Errorf("not ready after 90s: %v", lastErr))
		case <-time.After(50 * time.Millisecond):
		}
		probe, cancelProbe := context.WithTimeout(ctx, 2*time.Second)
		lastErr = d.ready(probe)
		cancelProbe()
		if lastErr == nil {
			say("%s ready in %s (pid %d, log %s)", d.name, time.Since(began).Round(10*time.Millisecond),
				cmd.Process.Pid, r.logFile(d.name))
			return nil
		}
	}
}

func (r *rig) startFailure(d *daemon, err error) error {
	b, _ := os.ReadFile(r.logFile(d.name))
	fmt.Fprintf(os.Stderr, "---- last lines of %s ----\n%s---- end of %s ----\n", r.logFile(d.name), tail(b, 30), d.name)
	return fmt.Errorf("%s: %w", d.name, err)
}

// down stops, by pid, the daemons this state dir started, newest first.
func (r *rig) down() error {
	var errs []error
	for i := len(daemonNames) - 1; i >= 0; i-- {
		name := daemonNames[i]
		pid, ok := r.livePid(name)
		if ok {
			if err := stopPid(pid); err != nil {
				errs = append(errs, fmt.Errorf("%s (pid %d): %w", name, pid, err))
				continue
			}
			say("stopped %s (pid %d)", name, pid)
		}
		_ = os.Remove(r.pidFile(name))
	}
	_ = os.Remove(r.envFile())
	return errors.Join(errs...)
}

func (r *rig) status() {
	for _, name := range daemonNames {
		if pid, ok := r.livePid(name); ok {
			fmt.Printf("%-26s running (pid %d)\n", name, pid)
		} else {
			fmt.Printf("%-26s stopped\n", name)
		}
	}
}

func (r *rig) allAlive(names []string) bool {
	for _, name := range names {
		if _, ok := r.livePid(name); !ok {
			return false
		}
	}
	return true
}

// livePid reads name's pid file and says whether that process still runs
// the binary we started (a recycled pid of another program does not count).
func (r *rig) livePid(name string) (int, bool) {
	b, err := os.ReadFile(r.pidFile(name))
	if err != nil {
		return 0, false
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 0 {
		return 0, false
	}
	if syscall.Kill(pid, 0) != nil {
		return 0, false
	}
	cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil || !strings.Contains(string(cmdline), r.state) {
		// Every daemon's command line names the state dir; one that does
		// not is somebody else's process that got the pid.
		return 0, false
	}
	return pid, true
}

// stopPid sends SIGTERM, waits up to 10 s, then SIGKILL.
func stopPid(pid int) error {
	if err := syscall.Kill(pid, syscall.SIGTERM); err != nil {
		return nil // already gone
	}
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if syscall.Kill(pid, 0) != nil || isZombie(pid) {
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		return nil
	}
	return nil
}

func isZombie(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return true
	}
	// The state is the field after the parenthesised command name.
	s := string(b)
	if i := strings.LastIndexByte(s, ')'); i >= 0 && i+2 < len(s) {
		return s[i+2] == 'Z'
	}
	return false
}

func freePorts(n int) ([]int, error) {
	var ports []int
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// httpReady returns a probe that wants a 200 from url.
func httpReady(url string, client *http.Client, header http.Header) func(ctx context.Context) error {
	return func(ctx context.Context) error {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return err
		}
		for k, v := range header {
			req.Header[k] = v
		}
		resp, err := client.Do(req)
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("%s: %s", url, resp.Status)
		}
		return nil
	}
}

func (r *rig) registryDaemon(t *tools, hostport string) (*daemon, error) {
	dir := filepath.Join(r.state, "registry")
	if err := os.MkdirAll(filepath.Join(dir, "data"), 0o755); err != nil {
		return nil, err
	}
	cfg := fmt.Sprintf(`version: 0.1
log:
  level: info
storage:
  filesystem:
    rootdirectory: %s
  delete:
    enabled: true
http:
  addr: %s
`, filepath.Join(dir, "data"), hostport)
	path := filepath.Join(dir, "config.yml")
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		return nil, err
	}
	return &daemon{
		name:  "registry",
		argv:  []string{t.registry, "serve", path},
		ready: httpReady("http://"+hostport+"/v2/", http.DefaultClient, nil),
	}, nil
}

func (r *rig) buildkitDaemon(t *tools, registry string) (*daemon, string, error) {
	dir := filepath.Join(r.state, "buildkit")
	if err := os.MkdirAll(filepath.Join(dir, "root"), 0o755); err != nil {
		return nil, "", err
	}
	sock := filepath.Join(dir, "buildkitd.sock")
	if len(sock) > 100 {
		// Unix socket paths are limited to 108 bytes; a deep clone gets a
		// short path of its own under /tmp, still unique to the state dir.
		h := sha256.Sum256([]byte(r.state))
		short := filepath.Join(os.TempDir(), "gantry-"+hex.EncodeToString(h[:5]))
		if err := os.MkdirAll(short, 0o700); err != nil {
			return nil, "", err
		}
		sock = filepath.Join(short, "buildkitd.sock")
	}
	_ = os.Remove(sock)
	addr := "unix://" + sock
	cfg := fmt.Sprintf(`root = %q
[grpc]
  address = [%q]
[worker.oci]
  enabled = true
  snapshotter = "overlayfs"
  binary = %q
  networkMode = "host"
  gc = true
[worker.containerd]
  enabled = false
[registry.%q]
  http = true
  insecure = true
`, filepath.Join(dir, "root"), addr, t.runc, registry)
	path := filepath.Join(dir, "buildkitd.toml")
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		return nil, "", err
	}
	return &daemon{
		name: "buildkitd",
		argv: []string{t.buildkitd, "--config", path},
		// buildkitd finds runc on PATH for its OCI worker.
		env: []string{"PATH=" + filepath.Dir(t.runc) + ":" + os.Getenv("PATH")},
		ready: func(ctx context.Context) error {
			return exec.CommandContext(ctx, t.buildctl, "--addr", addr, "debug", "workers").Run()
		},
	}, addr, nil
}

func (r *rig) etcdDaemon(t *tools, port, peerPort int) *daemon {
	client := "http://127.0.0.1:" + strconv.Itoa(port)
	peer := "http://127.0.0.1:" + strconv.Itoa(peerPort)
	return &daemon{
		name: "etcd",
		argv: []string{t.etcd,
			"--name", "gantry-test",
			"--data-dir", filepath.Join(r.state, "etcd"),
			"--listen-client-urls", client, "--advertise-client-urls", client,
			"--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
			"--initial-cluster", "gantry-test=" + peer,
			"--log-outputs", "stderr",
			// Test data is thrown away at each start: durability buys nothing here.
			"--unsafe-no-fsync",
		},
		ready: httpReady(client+"/health", http.DefaultClient, nil),
	}
}

// apiServerDaemon runs one kube-apiserver over etcd under etcdPrefix (one
// cluster per prefix), with the shared PKI, and writes its admin
// kubeconfig.
func (r *rig) apiServerDaemon(t *tools, name string, port int, etcd, etcdPrefix string, pki *pki) (*daemon, string, error) {
	dir := filepath.Join(r.state, "kube")
	server := "https://127.0.0.1:" + strconv.Itoa(port)
	kubeconfig := filepath.Join(dir, "kubeconfig")
	if name != "kube-apiserver" {
		kubeconfig += "-" + strings.TrimPrefix(name, "kube-apiserver-")
	}
	if err := writeKubeconfig(kubeconfig, server, pki); err != nil {
		return nil, "", err
	}
	return &daemon{
		name: name,
		argv: []string{t.kubeAPIServer,
			"--etcd-servers", etcd,
			"--etcd-prefix", etcdPrefix,
			"--bind-address", "127.0.0.1", "--advertise-address", "127.0.0.1",
			"--secure-port", strconv.Itoa(port),
			"--cert-dir", filepath.Join(dir, "certs-"+name),
			"--tls-cert-file", pki.serverCert, "--tls-private-key-file", pki.serverKey,
			"--client-ca-file", pki.caCert,
			"--token-auth-file", pki.tokens,
			"--authorization-mode", "RBAC",
			"--service-account-key-file", pki.saPub,
			"--service-account-signing-key-file", pki.saKey,
			"--service-account-issuer", "https://kubernetes.default.svc",
			// The first cluster runs no namespace controller, so a deleted
			// test namespace never finalizes and its Services keep their
			// IPs: a /24 filled after ~250 Services (a day of suite runs by
			// a few sessions: "range is full"). A /16 lasts 256 times longer.
			"--service-cluster-ip-range", "10.96.0.0/16",
			// No serviceaccount controller runs, so nothing would create
			// the "default" ServiceAccount that this plugin insists on.
			"--disable-admission-plugins", "ServiceAccount",
			"--endpoint-reconciler-type", "none",
			// Without it the API server itself refuses privileged pods,
			// and admission tests would pass for the wrong reason.
			"--allow-privileged=true",
			"--profiling=false",
		},
		ready: httpReady(server+"/readyz", pki.client(), pki.adminHeader()),
	}, kubeconfig, nil
}

// controllerManagerDaemon runs kube-controller-manager against the
// "controllers" API server: the Deployment and ReplicaSet controllers (and
// the namespace controller, so that a deleted test namespace really goes),
// each acting as its own ServiceAccount
// (system:serviceaccount:kube-system:replicaset-controller, …) as in a
// real cluster, where admission sees them by those names.
func (r *rig) controllerManagerDaemon(t *tools, port, apiPort int, kubeconfig string, pki *pki) *daemon {
	api := "https://127.0.0.1:" + strconv.Itoa(apiPort)
	healthz := httpReady("https://127.0.0.1:"+strconv.Itoa(port)+"/healthz", pki.client(), nil)
	var sas []func(context.Context) error
	for _, sa := range []string{"deployment-controller", "replicaset-controller"} {
		sas = append(sas, httpReady(api+"/api/v1/namespaces/kube-system/serviceaccounts/"+sa, pki.client(), pki.adminHeader()))
	}
	return &daemon{
		name: "kube-controller-manager",
		argv: []string{t.kubeControllerManager,
			"--kubeconfig", kubeconfig,
			// No request-header CA here: do not look it up (it would be
			// retried, and logged, forever).
			"--authentication-kubeconfig", kubeconfig, "--authentication-skip-lookup",
			"--authorization-kubeconfig", kubeconfig,
			"--bind-address", "127.0.0.1", "--secure-port", strconv.Itoa(port),
			// The loopback serving pair of the rig (valid for 127.0.0.1).
			"--tls-cert-file", pki.serverCert, "--tls-private-key-file", pki.serverKey,
			"--controllers", "deployment-controller,replicaset-controller,namespace-controller",
			"--use-service-account-credentials",
			"--leader-elect=false",
			"--profiling=false",
		},
		// Ready when it serves and has made the ServiceAccounts its
		// controllers run as (it does so as it starts each of them).
		ready: func(ctx context.Context) error {
			for _, probe := range append([]func(context.Context) error{healthz}, sas...) {
				if err := probe(ctx); err != nil {
					return err
				}
			}
			return nil
		},
	}
}

// buildBaseImage makes a small image with a shell (busybox) offline and
// pushes it to the registry: nothing can be pulled from the internet here,
// so every test Dockerfile starts FROM this image.
func (r *rig) buildBaseImage(t *tools, env *testenv.Env) (string, error) {
	dir := filepath.Join(r.state, "base")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	bb, err := os.ReadFile(t.busybox)
	if err != nil {
		return "", err
	}
	if err := os.WriteFile(filepath.Join(dir, "busybox"), bb, 0o755); err != nil {
		return "", err
	}
	dockerfile := `FROM scratch
COPY busybox /bin/busybox
RUN ["/bin/busybox", "--install", "-s", "/bin"]
RUN mkdir -p /etc /tmp /home/app && chmod 1777 /tmp && \
    printf 'root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000:app:/home/app:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n' > /etc/passwd && \
    printf 'root:x:0:\napp:x:1000:\nnogroup:x:65534:\n' > /etc/group && chown 1000:1000 /home/app
`
	if err := os.WriteFile(filepath.Join(dir, "Dockerfile"), []byte(dockerfile), 0o644); err != nil {
		return "", err
	}
	ref := env.Registry + "/gantry/base"
	meta := filepath.Join(dir, "metadata.json")
	logf, err := os.Create(r.logFile("base-image"))
	if err != nil {
		return "", err
	}
	defer logf.Close()
	began := time.Now()
	cmd := exec.Command(t.buildctl, "--addr", env.BuildkitAddr, "build",
		"--frontend", "dockerfile.v0", "--local", "context="+dir, "--local", "dockerfile="+dir,
		"--output", "type=image,name="+ref+":busybox,push=true",
		"--metadata-file", meta, "--progress", "plain")
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Run(); err != nil {
		b, _ := os.ReadFile(r.logFile("base-image"))
		os.Stderr.Write(tail(b, 30))
		return "", fmt.Errorf("building the base image: %w", err)
	}
	digest, err := metadataDigest(meta)
	if err != nil {
		return "", err
	}
	say("base image %s@%s built and pushed in %s", ref, digest, time.Since(began).Round(10*time.Millisecond))
	return ref + "@" + digest, nil
}
