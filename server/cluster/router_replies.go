package cluster

import (
	"fmt"
	"strings"

	"github.com/nats-io/nats.go"

	"github.com/stompbox/stompbox/broker"
)

// Replies to temporary queues ride on core NATS like topics: the node that
// holds a session's temporary queues subscribes to
// <prefix>.r.<vhost>.<token>.* while it does (ReplyInterest), and a reply
// sent on another node to /reply-queue/<token>/<name> is published on
// <prefix>.r.<vhost>.<token>.<name> (each part escaped as one token). No
// subscriber means the requester is gone: NATS drops it, as the broker
// drops such a reply.

const (
	replyClass  = "r"
	replyPrefix = "/reply-queue/"
)

// replyBase is "<prefix>.r.<vhost token>.<token token>".
func replyBase(prefix, vhost, token string) []byte {
	b := classBase(prefix, replyClass, vhost)
	b = append(b, '.')
	return appendSegment(b, token)
}

// replySubject is the subject of a reply-queue key, or false when key is
// not /reply-queue/<token>/<name>.
func replySubject(prefix, vhost, key string) (string, bool) {
	rest, ok := strings.CutPrefix(key, replyPrefix)
	if !ok {
		return "", false
	}
	token, name, ok := strings.Cut(rest, "/")
	if !ok || token == "" {
		return "", false
	}
	b := append(replyBase(prefix, vhost, token), '.')
	return string(appendSegment(b, name)), true
}

// ReplyInterest implements broker.Cluster: it never blocks.
func (r *router) ReplyInterest(vhost, token string, on bool) {
	subj := string(replyBase(r.cfg.Prefix, vhost, token)) + ".*"
	r.interest(vhost, []string{subj}, token, on, true)
}

// PublishReply implements broker.Cluster: one publish, no wait.
func (r *router) PublishReply(vhost, key string, m *broker.Message) error {
	if r.closed() {
		return unavailable("publish reply", errRouterClosed)
	}
	subj, ok := replySubject(r.cfg.Prefix, vhost, key)
	if !ok {
		return fmt.Errorf("cluster: publish reply: %q is not a reply queue", key)
	}
	if err := r.publishCore(subj, m); err != nil {
		return unavailable("publish reply", err)
	}
	return nil
}

// onReplyMsg hands a reply from another node to the local temporary queue.
func (r *router) onReplyMsg(ts *topicSub, msg *nats.Msg) {
	b := r.brk.Load()
	if b == nil {
		return
	}
	// The subject is the subscription's base, then the name's token.
	i := strings.LastIndexByte(msg.Subject, '.')
	j := strings.LastIndexByte(msg.Subject[:max(i, 0)], '.')
	if i < 0 || j < 0 {
		return
	}
	token, ok1 := unescapeSegment(msg.Subject[j+1 : i])
	name, ok2 := unescapeSegment(msg.Subject[i+1:])
	if !ok1 || !ok2 {
		r.log.Warn("reply on a subject stompbox does not use", "subject", msg.Subject)
		return
	}
	m, err := decodeMessage(msg.Data)
	if err != nil {
		r.log.Warn("undecodable reply dropped", "subject", msg.Subject, "err", err)
		return
	}
	b.DeliverReply(ts.vhost, replyPrefix+token+"/"+name, m)
}
