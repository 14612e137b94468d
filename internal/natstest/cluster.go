package natstest

import (
	"fmt"
	"testing"
)

// Node is what one cluster member needs to know to be written: its own
// client and route ports and the routes to every member (itself
// included, which nats-server skips).
type Node struct {
	Index, ClientPort, RoutePort int
	Routes                       []string
}

// StartCluster runs n nats-server processes clustered over loopback (free
// ports; each logs to a file in its own directory) from the configuration
// files conf writes for each node, with env added to each environment.
// Kill one with Server.Kill to crash it.
func StartCluster(t testing.TB, bin string, n int, conf func(Node) (text string, env []string)) []*Server {
	t.Helper()
	nodes := make([]Node, n)
	var routes []string
	for i := range nodes {
		nodes[i] = Node{Index: i, ClientPort: FreePort(t), RoutePort: FreePort(t)}
		routes = append(routes, fmt.Sprintf("nats-route://127.0.0.1:%d", nodes[i].RoutePort))
	}
	out := make([]*Server, n)
	for i := range nodes {
		nodes[i].Routes = routes
		text, env := conf(nodes[i])
		out[i] = StartConfig(t, bin, text, env...)
	}
	return out
}
