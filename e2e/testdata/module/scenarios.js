// Deterministic scenarios of stompbox.js against a scripted server: each
// StompboxClient gets a FakeSocket (stomp.js's webSocketFactory) whose
// frames the scenario reads and answers, so resume, dedupe, presence and
// error handling are checked frame by frame, without a broker. Evaluated in
// the scenario page (testdata/module/index.html) by TestBrowserModule; it
// resolves with { <check name>: { got, want } } and the Go side compares.
(async () => {
  'use strict';
  const { StompboxClient, parseOffset, isNewer } = window.stompbox;
  const checks = {};
  const check = (name, got, want) => {
    checks[name] = { got: JSON.stringify(got), want: JSON.stringify(want) };
  };

  // FakeSocket is what stomp.js needs of a WebSocket. Frames the client
  // sends are kept, parsed, in frames.
  class FakeSocket {
    constructor(all) {
      this.readyState = 0;
      this.protocol = 'v12.stomp';
      this.binaryType = 'arraybuffer';
      this.frames = [];
      all.push(this);
      setTimeout(() => {
        this.readyState = 1;
        this.onopen({});
      }, 0);
    }
    send(data) {
      const text = typeof data === 'string' ? data : new TextDecoder().decode(data);
      for (const raw of text.split('\0')) {
        const lines = raw.replace(/^\n+/, '').split('\n\n')[0].split('\n');
        if (lines[0] === '') {
          continue; // a heart-beat
        }
        const headers = {};
        for (const l of lines.slice(1)) {
          const i = l.indexOf(':');
          headers[l.slice(0, i)] = l.slice(i + 1);
        }
        this.frames.push({ command: lines[0], headers });
        if (lines[0] === 'DISCONNECT' && headers.receipt) {
          // As a broker does: RECEIPT, then close.
          setTimeout(() => {
            this.server('RECEIPT', { 'receipt-id': headers.receipt });
            this.drop(1000);
          }, 0);
        }
      }
    }
    close(code = 1000, reason = '') {
      this.drop(code, reason);
    }
    // server sends one frame.
    server(command, headers = {}, body = '') {
      const lines = [command, ...Object.entries(headers).map(([k, v]) => k + ':' + v)];
      this.onmessage({ data: lines.join('\n') + '\n\n' + body + '\0' });
    }
    drop(code = 1006, reason = '') {
      if (this.readyState === 3) {
        return;
      }
      this.readyState = 3;
      setTimeout(() => this.onclose({ code, reason, wasClean: code !== 1006 }), 0);
    }
    last(command) {
      return this.frames.filter((f) => f.command === command).pop();
    }
  }

  const tick = (ms = 20) => new Promise((r) => setTimeout(r, ms));
  const newClient = (sockets, extra = {}) => new StompboxClient(Object.assign({
    brokerURL: 'ws://fake/ws', reconnectDelay: 10, heartbeatIncoming: 0, heartbeatOutgoing: 0, connectionTimeout: 0,
    stompConfig: { webSocketFactory: () => new FakeSocket(sockets) },
  }, extra));
  // connect answers the CONNECT of the next socket with CONNECTED.
  const connect = async (sockets, headers) => {
    const fresh = () => sockets.find((s) => !s.answered && s.last('CONNECT'));
    await e2e.waitFor('a CONNECT on a new socket', fresh);
    const ws = fresh();
    ws.answered = true;
    ws.server('CONNECTED', Object.assign({ version: '1.2' }, headers));
    await tick();
    return ws;
  };

  // Offsets.
  check('parseOffset', ['1f-7', '1f-007', 'A-1', '1f-', '-1', '1f-18446744073709551616x', '0-0'].map((t) => parseOffset(t) !== null),
    [true, false, false, false, false, false, true]);
  const o = (t) => parseOffset(t);
  check('isNewer', [
    isNewer(o('a-10'), null), isNewer(o('a-10'), o('a-9')), isNewer(o('a-9'), o('a-10')), isNewer(o('a-10'), o('a-10')),
    isNewer(o('a-100'), o('a-99')), isNewer(o('b-1'), o('a-99')), isNewer(o('a-18446744073709551617'), o('a-18446744073709551616')),
  ], [true, true, false, false, true, true, true]);

  // Resume: token, resume-after, new id and UNSUBSCRIBE of the old one,
  // dedupe by offset.
  {
    const sockets = [];
    const got = [];
    const recovered = [];
    const sb = newClient(sockets);
    const sub = sb.subscribe('/topic/a', (m) => got.push(m.headers.offset), {
      history: 5, onRecovered: (r) => recovered.push(r),
    });
    sb.activate();
    let ws = await connect(sockets, { 'resume-token': 'T1', 'max-body': '65536', 'resume-grace': '120000' });
    check('first CONNECT has no resume-token', ws.last('CONNECT').headers['resume-token'], undefined);
    check('limits from CONNECTED', [sb.limits.maxBody, sb.limits.resumeGrace], [65536, 120000]);
    const s1 = ws.last('SUBSCRIBE').headers;
    check('first SUBSCRIBE asks for history', [s1.destination, s1.history, s1['resume-after'], !!s1.receipt], ['/topic/a', '5', undefined, true]);
    ws.server('RECEIPT', { 'receipt-id': s1.receipt, offset: 'e1-10' });
    for (const off of ['e1-9', 'e1-10', 'e1-11', 'e1-12', 'e1-12', 'e1-11']) {
      ws.server('MESSAGE', { subscription: s1.id, destination: '/topic/a', 'message-id': off, offset: off }, 'x');
    }
    check('delivered once each, in order', got.splice(0), ['e1-9', 'e1-10', 'e1-11', 'e1-12']);
    check('lastOffset', sub.lastOffset, 'e1-12');

    ws.drop();
    ws = await connect(sockets, { resumed: 'true', 'resume-token': 'T2' });
    check('CONNECT after a drop has the resume token', ws.last('CONNECT').headers['resume-token'], 'T1');
    const after = ws.frames.filter((f) => f.command === 'SUBSCRIBE' || f.command === 'UNSUBSCRIBE')
      .map((f) => [f.command, f.headers.id === s1.id ? 'old' : 'new', f.headers['resume-after'] || '', f.headers.history || '']);
    check('resumed: new SUBSCRIBE after the last offset, then UNSUBSCRIBE of the old id', after,
      [['SUBSCRIBE', 'new', 'e1-12', ''], ['UNSUBSCRIBE', 'old', '', '']]);
    const s2 = ws.last('SUBSCRIBE').headers;
    ws.server('RECEIPT', { 'receipt-id': s2.receipt, recovered: 'true', offset: 'e1-13' });
    ws.server('MESSAGE', { subscription: s1.id, destination: '/topic/a', 'message-id': 'o', offset: 'e1-13' }, 'x');
    for (const off of ['e1-12', 'e1-13', 'f2-1']) {
      ws.server('MESSAGE', { subscription: s2.id, destination: '/topic/a', 'message-id': off, offset: off, replayed: 'true' }, 'x');
    }
    check('after the resume: old id ignored, duplicate dropped, new epoch taken', got.splice(0), ['e1-13', 'f2-1']);
    check('onRecovered', recovered, [{ recovered: true, offset: 'e1-13' }]);

    ws.drop();
    ws = await connect(sockets, { resumed: 'false', 'resume-token': 'T3' });
    check('second CONNECT has the newest token', ws.last('CONNECT').headers['resume-token'], 'T2');
    const fresh = ws.frames.filter((f) => f.command === 'SUBSCRIBE' || f.command === 'UNSUBSCRIBE')
      .map((f) => [f.command, f.headers['resume-after'] || '']);
    check('not resumed: SUBSCRIBE after the last offset, nothing to UNSUBSCRIBE', fresh, [['SUBSCRIBE', 'f2-1']]);
    check('stats', [sb.stats.connects, sb.stats.resumed, sb.stats.duplicates, sb.stats.ignored], [3, 1, 3, 1]);
    await sb.deactivate();
    check('deactivate forgets the token', sb.resumeToken, null);
  }

  // A subscription without offsets (a queue) repeats
  // its SUBSCRIBE with the same id on a resumed session.
  {
    const sockets = [];
    const sb = newClient(sockets);
    sb.subscribe('/queue/q', () => {});
    sb.activate();
    let ws = await connect(sockets, { 'resume-token': 'T1' });
    const id = ws.last('SUBSCRIBE').headers.id;
    ws.drop();
    ws = await connect(sockets, { resumed: 'true', 'resume-token': 'T2' });
    const again = ws.frames.filter((f) => f.command === 'SUBSCRIBE' || f.command === 'UNSUBSCRIBE')
      .map((f) => [f.command, f.headers.id === id]);
    check('resumed queue subscription: same id, no UNSUBSCRIBE', again, [['SUBSCRIBE', true]]);
    await sb.deactivate();
  }

  // Dedupe per epoch: after a broker crash the history goes on under a
  // new epoch and replays older epochs' messages; each is a duplicate if
  // its own epoch has seen it. A presence stream subscribes anew on a
  // resumed session (events lost with the socket are not resent).
  {
    const sockets = [];
    const got = [];
    const sb = newClient(sockets);
    sb.subscribe('/topic/e', (m) => got.push(m.headers.offset), { history: 5 });
    sb.presence('/topic/e', {});
    sb.activate();
    let ws = await connect(sockets, { 'resume-token': 'T1' });
    const [hid, pid] = ws.frames.filter((f) => f.command === 'SUBSCRIBE').map((f) => f.headers.id);
    for (const off of ['a1-1', 'a1-2', 'b2-3', 'b2-4']) {
      ws.server('MESSAGE', { subscription: hid, destination: '/topic/e', 'message-id': off, offset: off }, 'x');
    }
    ws.drop();
    ws = await connect(sockets, { resumed: 'true', 'resume-token': 'T2' });
    const subs = ws.frames.filter((f) => f.command === 'SUBSCRIBE');
    const h2 = subs.find((f) => f.headers.destination === '/topic/e').headers.id;
    const p2 = subs.find((f) => f.headers.destination === '/presence/e').headers.id;
    check('resumed: the presence stream subscribes under a new id', [p2 !== pid, ws.frames.some((f) => f.command === 'UNSUBSCRIBE' && f.headers.id === pid)], [true, true]);
    for (const off of ['a1-1', 'a1-2', 'b2-3', 'b2-4', 'c3-5']) { // after a crash: everything retained, then the new epoch
      ws.server('MESSAGE', { subscription: h2, destination: '/topic/e', 'message-id': off, offset: off, replayed: 'true' }, 'x');
    }
    check('per-epoch dedupe: no message twice across epochs', got, ['a1-1', 'a1-2', 'b2-3', 'b2-4', 'c3-5']);
    await sb.deactivate();
  }

  // An UNSUBSCRIBE whose RECEIPT did not come (the connection dropped) is
  // sent again on the next resumed session, and forgotten once receipted;
  // the same for unsubscribe() while disconnected. A fresh session needs
  // none of them.
  {
    const sockets = [];
    const sb = newClient(sockets);
    sb.subscribe('/topic/h', () => {}, { history: 1 });
    const gone = sb.subscribe('/queue/gone', () => {});
    sb.activate();
    let ws = await connect(sockets, { 'resume-token': 'T1' });
    const first = ws.frames.filter((f) => f.command === 'SUBSCRIBE').map((f) => f.headers.id);
    ws.server('MESSAGE', { subscription: first[0], destination: '/topic/h', 'message-id': 'm', offset: 'e1-1' }, 'x');
    ws.drop();
    ws = await connect(sockets, { resumed: 'true', 'resume-token': 'T2' });
    const unsub1 = ws.frames.filter((f) => f.command === 'UNSUBSCRIBE').map((f) => f.headers.id);
    check('resumed: the replaced id is unsubscribed', unsub1, [first[0]]);
    ws.drop(); // before any RECEIPT
    gone.unsubscribe(); // while disconnected
    ws = await connect(sockets, { resumed: 'true', 'resume-token': 'T3' });
    const unsub2 = ws.frames.filter((f) => f.command === 'UNSUBSCRIBE').map((f) => f.headers.id).sort();
    const replacedAgain = ws.frames.filter((f) => f.command === 'SUBSCRIBE').map((f) => f.headers.id);
    check('resumed again: the unreceipted UNSUBSCRIBEs are sent again', unsub2.filter((id) => !replacedAgain.includes(id)).length >= 2, true);
    check('... including the replaced id and the one unsubscribed while away', [unsub2.includes(first[0]), unsub2.includes(first[1])], [true, true]);
    for (const f of ws.frames.filter((f) => f.command === 'UNSUBSCRIBE')) {
      ws.server('RECEIPT', { 'receipt-id': f.headers.receipt });
    }
    ws.drop();
    ws = await connect(sockets, { resumed: 'true', 'resume-token': 'T4' });
    const unsub3 = ws.frames.filter((f) => f.command === 'UNSUBSCRIBE').map((f) => f.headers.id);
    check('receipted UNSUBSCRIBEs are not sent again', unsub3.includes(first[0]) || unsub3.includes(first[1]), false);
    ws.drop();
    ws = await connect(sockets, { resumed: 'false', 'resume-token': 'T5' });
    check('a fresh session gets no UNSUBSCRIBE', ws.frames.filter((f) => f.command === 'UNSUBSCRIBE').length, 0);
    await sb.deactivate();
  }

  // Presence: headers, snapshot, join, leave; a new snapshot after a
  // fresh session reports the difference.
  {
    const sockets = [];
    const events = [];
    const sb = newClient(sockets);
    sb.subscribe('/topic/room', () => {}, { presence: { id: 'tab-1', info: 'Ann' } });
    const p = sb.presence('/topic/room', {
      onJoin: (m) => events.push('join ' + m.id), onLeave: (m) => events.push('leave ' + m.id),
    });
    sb.activate();
    let ws = await connect(sockets, {});
    const subs = ws.frames.filter((f) => f.command === 'SUBSCRIBE').map((f) => f.headers);
    check('presence SUBSCRIBE headers', [subs[0].presence, subs[0]['presence-id'], subs[0]['presence-info'], subs[1].destination],
      ['true', 'tab-1', 'Ann', '/presence/room']);
    const sid = subs[1].id;
    const member = (id) => ({ user: 'u', id, info: id.toUpperCase() });
    const ev = (kind, body) => ws.server('MESSAGE', { subscription: sid, destination: '/presence/room', 'message-id': 'p', 'presence-event': kind }, JSON.stringify(body));
    ev('snapshot', { members: [member('a'), member('b')] });
    ev('join', member('c'));
    ev('join', member('c'));
    ev('leave', member('a'));
    ev('leave', member('a'));
    check('presence events', events.splice(0), ['join a', 'join b', 'join c', 'leave a']);
    check('members', [...p.members.values()].map((m) => m.info), ['B', 'C']);
    ws.drop();
    ws = await connect(sockets, { resumed: 'false' });
    const sid2 = ws.frames.filter((f) => f.command === 'SUBSCRIBE' && f.headers.destination === '/presence/room').pop().headers.id;
    ws.server('MESSAGE', { subscription: sid2, destination: '/presence/room', 'message-id': 'p', 'presence-event': 'snapshot' },
      JSON.stringify({ members: [member('b'), member('d')] }));
    check('a new snapshot reports the difference', events.splice(0), ['leave c', 'join d']);
    await sb.deactivate();
  }

  // retryable:false stops the client; no new socket.
  {
    const sockets = [];
    const errors = [];
    const sb = newClient(sockets, { onError: (e) => errors.push([e.code, e.fatal]) });
    sb.activate();
    const ws = await connect(sockets, {});
    const sent = sb.send({ destination: '/queue/q', body: 'x' }).then(() => 'receipt', (e) => e.code);
    ws.server('ERROR', { message: 'too big', 'error-code': 'frame-too-large', retryable: 'false', 'receipt-id': ws.last('SEND').headers.receipt });
    ws.drop(1009);
    await tick(200);
    check('frame-too-large: reported, stopped, no reconnect',
      [errors, sb.state, sb.client.active, sockets.length, await sent], [[['frame-too-large', true]], 'error', false, 1, 'frame-too-large']);
  }

  // reconnect-after sets the delay of the next attempt.
  {
    const sockets = [];
    const sb = newClient(sockets, { reconnectDelay: 10 });
    sb.activate();
    const ws = await connect(sockets, {});
    ws.server('ERROR', { message: 'shutting down', 'error-code': 'server-shutdown', retryable: 'true', 'reconnect-after': '400' });
    ws.drop(1012);
    await tick(200);
    const early = [sb.state, sockets.length];
    await e2e.waitFor('the reconnect', () => sockets.length === 2, 2000);
    await connect(sockets, {});
    check('server-shutdown with reconnect-after 400: no attempt at 200 ms, one later', [early, sb.state], [['reconnecting', 1], 'connected']);
    await sb.deactivate();
  }
  // Retryable ERRORs in a row (no reconnect-after) back off: the delay
  // doubles, with jitter between half and all of it (500 ms base: the
  // first retry after 250-500 ms, the second after 500-1000 ms).
  {
    const sockets = [];
    const sb = newClient(sockets, { reconnectDelay: 500 });
    sb.activate();
    let ws = await connect(sockets, {});
    const refuse = () => ws.server('ERROR', { message: 'limit exceeded', 'error-code': 'limit-exceeded', retryable: 'true' });
    refuse();
    ws.drop(1008);
    await e2e.waitFor('the first reconnect', () => sockets.length === 2, 3000);
    ws = await connect(sockets, {});
    refuse();
    ws.drop(1008);
    const t0 = Date.now();
    await tick(250);
    const early = sockets.length;
    await e2e.waitFor('the second reconnect', () => sockets.length === 3, 3000);
    const second = Date.now() - t0;
    check('backoff: the second retry waits at least twice the base delay\'s half', [early, second >= 500], [2, true]);
    await connect(sockets, {});
    await sb.deactivate();
  }
  return checks;
})()
