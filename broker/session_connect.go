package broker

import (
	"context"
	"errors"
	"strconv"

	"github.com/stompbox/stompbox/frames"
)

// handleConnect negotiates version and heart-beats, authenticates, and
// answers CONNECTED (STOMP 1.2, "Connecting").
func (s *Session) handleConnect(f *frames.Frame) *stompError {
	if s.state != stateAwaitingConnect {
		return protocolErr(CodeProtocolError, "already connected", "CONNECT may be sent only once per connection.")
	}
	accept, present := f.Header(frames.HeaderAcceptVersion)
	version, ok := frames.NegotiateVersion(accept, present)
	if !ok {
		return &stompError{code: CodeUnsupportedVersion, message: "unsupported protocol version",
			detail: "Supported protocol versions are " + frames.SupportedVersions + "; the client offered " + string(accept) + ".",
			reason: CloseProtocolError}
	}
	var client frames.HeartBeat
	if hb, ok := f.Header(frames.HeaderHeartBeat); ok && version > frames.V10 {
		var err error
		if client, err = frames.ParseHeartBeat(hb); err != nil {
			return protocolErr(CodeInvalidHeader, "invalid heart-beat header", err.Error())
		}
	}
	login, _ := f.Header("login")
	passcode, _ := f.Header("passcode")
	host, _ := f.Header("host")
	ctx, cancel := context.WithTimeout(context.Background(), s.b.cfg.ConnectTimeout)
	defer cancel()
	p, err := s.principal, error(nil) // the preauthenticated one, if any
	if p == nil || len(login) > 0 || len(passcode) > 0 {
		// Credentials in CONNECT win over the upgrade's token.
		p, err = s.b.cfg.Authenticator.Authenticate(ctx, Credentials{
			Login: string(login), Passcode: string(passcode), Host: string(host), RemoteAddr: s.remote,
		})
	}
	if err != nil {
		retryable := errors.Is(err, ErrAuthUnavailable)
		if !retryable {
			s.b.DelayAuthFailure(ctx)
		}
		return &stompError{code: CodeAuthFailed, message: "authentication failed", detail: err.Error(),
			retryable: retryable, reason: ClosePolicy}
	}
	sp, known := s.b.spaceFor(string(host))
	if !known {
		return &stompError{code: CodeUnknownHost, message: "unknown virtual host",
			detail: "This server has no virtual host " + strconv.Quote(truncateString(string(host), 64)) +
				"; set the CONNECT host header to one it serves.", reason: ClosePolicy}
	}
	if !s.b.cfg.Authorizer.AllowHost(p, sp.name) {
		return &stompError{code: CodeForbidden, message: "forbidden",
			detail: "User " + strconv.Quote(p.Name) + " may not use virtual host " + strconv.Quote(sp.name) + ".", reason: ClosePolicy}
	}
	s.space = sp
	s.principal = p
	s.armExpiry()
	if id, ok := f.Header("client-id"); ok {
		s.extra().clientID = string(id)
	}
	s.version = version
	s.escaping = frames.EscapingFor(version, frames.CmdMessage)
	s.parser.SetVersion(version)

	send, expect := frames.NegotiateHeartBeat(s.b.heartBeatOffer(), client)
	s.expect = expect
	s.sendInterval.Store(int64(send))
	s.state = stateConnected
	s.publishCard()
	s.liveness.Store(int64(s.ReadTimeout())) // for the writer's WebSocket pings (liveness.go)
	s.auth.flags.Or(authConnected)
	s.b.stats.Connects.Add(1)

	// Session recovery: a parked session the token names is claimed now
	// (a connected one taken over), and this session gets a token of its own.
	resumeToken, askedResume := f.Header("resume-token")
	var old *Session
	var handed *SessionState // a session another node handed over (cluster_session.go)
	cs := s.b.clusterSessions()
	if askedResume && s.b.resume.enabled() {
		local, node := splitResumeToken(resumeToken)
		switch {
		case cs != nil && node != "" && node != cs.SessionNode():
			handed = s.fetchSession(ctx, cs, resumeToken, node, p.Name, sp.name, version)
		case cs != nil && node != "":
			old = s.claimParked(ctx, local, p.Name, sp.name, version)
		default:
			old = s.claimParked(ctx, resumeToken, p.Name, sp.name, version)
		}
	}
	var token string
	if s.b.resume.enabled() {
		token = s.b.resume.issue(s)
		if cs != nil {
			token += "." + cs.SessionNode()
		}
	}
	connected := func(resumed bool) func([]byte) []byte {
		return func(dst []byte) []byte {
			dst = frames.AppendCommand(dst, frames.CmdConnected)
			dst = frames.AppendHeaderString(dst, frames.EscapeNone, "version", version.String())
			dst = frames.AppendHeaderString(dst, frames.EscapeNone, "session", s.id)
			dst = frames.AppendHeaderString(dst, frames.EscapeNone, "server", s.b.cfg.ServerName)
			// The negotiated intervals, not only the server's own: a client
			// computing max(its own, ours) gets the same answer, and clients
			// that time reads from our values alone (go-stomp) do not drop a
			// connection whose heart-beats they turned off.
			dst = append(dst, "heart-beat:"...)
			dst = frames.AppendHeartBeat(dst, frames.HeartBeat{Send: send, Receive: expect})
			dst = append(dst, '\n')
			dst = s.b.appendConnectedLimits(dst)
			dst = appendResumeHeaders(dst, token, resumed, askedResume || token != "")
			return frames.AppendEnd(dst)
		}
	}
	if old != nil && !s.mayAdopt(old) {
		s.b.resume.notAllowed(old)
		old = nil
	}
	if handed != nil && !s.mayAdoptState(handed) {
		s.b.resume.results[resumeRefused].Add(1)
		handed = nil
	}
	if handed != nil {
		s.control(connected(true))
		if err := s.adoptState(handed); err != nil {
			return err
		}
		s.b.cfg.Logger.Debug("session resumed from another node", "session", s.id, "remote", s.remote)
	} else if old != nil && s.adopt(old, connected(true)) {
		s.finishAdopt(old)
		s.b.cfg.Logger.Debug("session resumed", "session", s.id, "parked", old.id, "remote", s.remote)
	} else {
		if old != nil { // it overflowed between the claim and now
			s.b.resume.notAdopted(old)
		}
		s.b.resume.releaseClient(sp.name, p.Name, s.clientID())
		s.control(connected(false))
	}
	s.receipt(f)
	s.b.cfg.Logger.Debug("connected", "session", s.id, "remote", s.remote, "version", version.String(),
		"principal", p.Name, "heartbeat_send", send, "heartbeat_expect", expect)
	return nil
}

// heartBeatOffer is what the server puts into the heart-beat negotiation
// (STOMP 1.2, Heart-beating: each direction is MAX(sender's, receiver's)
// interval, or none when either side says 0). For the server->client
// direction it offers HeartbeatMinInterval (or HeartBeat.Send if shorter),
// not its default interval, so a client asking for a heart-beat every cy
// ms gets one every max(cy, HeartbeatMinInterval): an EOL costs the server almost nothing,
// and a client that wants to notice a dead server within seconds should
// be able to. For client->server it keeps asking for HeartBeat.Receive:
// browsers throttle timers in background tabs, so the server does not
// hold a client to an interval shorter than its own default even when
// the client offers one (docs/compliance.md, Heart-beating).
func (b *Broker) heartBeatOffer() frames.HeartBeat {
	hb := b.cfg.HeartBeat
	if hb.Send > 0 {
		// An embedder's HeartBeat.Send below the minimum is a promise the
		// server can keep too.
		hb.Send = min(hb.Send, b.cfg.HeartbeatMinInterval)
	}
	return hb
}
