package cluster

// SetHandoffWindow sets how many bytes of a session state the node sends
// before it waits for the requesting node to have read them.
func (n *Node) SetHandoffWindow(bytes int64) { n.router.sessions.window.Store(bytes) }
