package cluster

// CutNATS closes the node's NATS connection at once, as if the process
// died: nothing it does afterwards (no Nak, no Ack) reaches NATS.
func (n *Node) CutNATS() { n.link.nc.Close() }
