package cluster

import "slices"

// Info is what an operator sees of a node (the admin API's /api/cluster):
// what it was configured with and how it is connected. Nodes do not track
// each other's membership; the other nodes are known to NATS.
type Info struct {
	Name string // the cluster's name (cluster.name)
	Node string // this node's name (cluster.node)
	// SessionNode is the name other nodes fetch this node's parked
	// sessions under (the node's name and this process's instance).
	SessionNode string
	// Servers are the NATS servers it connects to.
	Servers []string
	// Connected is whether it is connected to NATS now.
	Connected bool
}

// Info returns the node's Info; it never blocks.
func (n *Node) Info() Info {
	return Info{
		Name:        n.cfg.Name,
		Node:        n.cfg.NodeName,
		SessionNode: n.router.SessionNode(),
		Servers:     slices.Clone(n.link.servers()),
		Connected:   n.link.connected(),
	}
}
