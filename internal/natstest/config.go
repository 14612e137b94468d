package natstest

import (
	"net"
	"os"
	"path/filepath"
	"strconv"
	"testing"
)

// StartConfig runs bin with the configuration file text conf (written to
// a fresh directory, which is also its working directory: relative paths
// in conf resolve there) and env added to its environment. The caller
// makes conf listen on a free loopback port (FreePort).
func StartConfig(t testing.TB, bin, conf string, env ...string) *Server {
	t.Helper()
	dir := t.TempDir()
	path := filepath.Join(dir, "nats.conf")
	if err := os.WriteFile(path, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	return launch(t, bin, dir, []string{"-c", path}, env)
}

// FreePort returns a loopback TCP port that was free a moment ago (for
// configuration files that must name their ports, like cluster routes).
func FreePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	_, p, _ := net.SplitHostPort(l.Addr().String())
	n, _ := strconv.Atoi(p)
	return n
}
