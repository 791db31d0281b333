// stompbox.js: reconnect-proof STOMP for browsers, on top of stomp.js.
//
// An ES module with no dependency but @stomp/stompjs (the StompJs global of
// the UMD bundle that stompbox serves at /vendor/stomp.umd.min.js, or the
// StompJs namespace passed as options.StompJs). It wraps one StompJs.Client
// and adds what stompbox's extensions make possible (docs/compliance.md):
//
//   - Session recovery: CONNECTED's resume-token is kept and sent in the
//     next CONNECT; a resumed session keeps its subscriptions and the
//     messages that arrived while the page was away.
//   - Topic history: each subscription remembers the offset of the last
//     message it delivered and, after any reconnect, subscribes again with
//     resume-after:<offset>, so nothing sent during the drop is missed. A
//     message whose offset is not newer than the last one delivered is
//     dropped, so the application sees no duplicate either.
//   - Presence: presence(topic) keeps the member list of a topic and calls
//     back on join and leave.
//   - Liveness that survives background tabs: the server's heart-beats are
//     checked by this module, not by stomp.js, and a check that finds the
//     page was suspended (a throttled or paused tab: its timers ran late)
//     lets the frames that queued up meanwhile arrive before it judges the
//     connection; the broker's WebSocket pings keep the socket alive while
//     page scripts do not run.
//   - Errors: an ERROR with retryable:false (e.g. frame-too-large) stops
//     reconnecting and is reported, since retrying would fail the same way;
//     an ERROR with reconnect-after:<ms> (server-shutdown) sets the delay of
//     the next attempt.
//
// Usage (see docs/quickstart.md):
//
//   import { StompboxClient } from '/stompbox.js';
//   const sb = new StompboxClient({ brokerURL: 'ws://localhost:61614/ws' });
//   sb.subscribe('/topic/chat.lobby', (m) => show(m.body), { history: 50 });
//   const who = sb.presence('/topic/chat.lobby', { onJoin: (m) => ..., onLeave: (m) => ... });
//   sb.activate();

const DEFAULTS = {
  reconnectDelay: 1000,
  heartbeatIncoming: 10000,
  heartbeatOutgoing: 10000,
  connectionTimeout: 5000,
};

// Connection states, as StompboxClient.state and onStateChange report them.
export const State = Object.freeze({
  CONNECTING: 'connecting', // first attempt after activate()
  CONNECTED: 'connected',
  RECONNECTING: 'reconnecting', // the connection was lost; a new attempt is scheduled
  DISCONNECTED: 'disconnected', // deactivate() was called
  ERROR: 'error', // an error that retrying cannot fix; not reconnecting
});

// WebSocket close code 1009 (message too big), which stompbox sends with
// ERROR frame-too-large, or alone.
const CLOSE_TOO_BIG = 1009;

// parseOffset splits an offset token <epoch>-<seq> (epoch: lowercase hex,
// seq: decimal). It returns null for anything else: such a message is
// delivered but not used for resuming.
export function parseOffset(token) {
  if (typeof token !== 'string') {
    return null;
  }
  const m = /^([0-9a-f]+)-(0|[1-9][0-9]*)$/.exec(token);
  return m ? { token: token, epoch: m[1], seq: m[2] } : null;
}

// compareSeq compares two decimal strings without leading zeros exactly
// (sequence numbers may outgrow a JavaScript number's 53 bits).
function compareSeq(a, b) {
  if (a.length !== b.length) {
    return a.length - b.length;
  }
  return a < b ? -1 : a > b ? 1 : 0;
}

// After retryable ERRORs in a row the reconnect delay doubles up to
// MAX_ERROR_BACKOFF_MS; a connection that lasted STABLE_MS resets it.
const MAX_ERROR_BACKOFF_MS = 30000;
const STABLE_MS = 30000;

// isNewer reports whether offset o comes after last: another epoch (a new
// history lifetime) always counts as newer.
export function isNewer(o, last) {
  return last === null || o.epoch !== last.epoch || compareSeq(o.seq, last.seq) > 0;
}

// StompboxClient is a stomp.js Client with session recovery, topic resume,
// presence and error handling as described above. Options:
//
//   brokerURL          ws:// or wss:// URL of stompbox's WebSocket endpoint
//   connectHeaders     CONNECT headers (login, passcode, host, ...)
//   reconnectDelay     ms before reconnecting after a drop (1000)
//   heartbeatIncoming, heartbeatOutgoing   STOMP heart-beats in ms (10000)
//   connectionTimeout  ms to wait for CONNECTED before retrying (5000)
//   StompJs            the stomp.js namespace (default: the StompJs global)
//   stompConfig        further stomp.js Client options, passed as they are
//
// and callbacks, also assignable as properties later: onStateChange(state),
// onConnect({resumed, headers}), onError({code, message, retryable, fatal,
// reconnectAfter, headers, body}), onClose(event) (the WebSocket's close
// event), debug(line).
export class StompboxClient {
  constructor(options = {}) {
    const StompJs = options.StompJs || globalThis.StompJs;
    if (!StompJs || !StompJs.Client) {
      throw new Error('stompbox.js: stomp.js is not loaded (load /vendor/stomp.umd.min.js first, or pass options.StompJs)');
    }
    this.onStateChange = options.onStateChange || (() => {});
    this.onConnect = options.onConnect || (() => {});
    this.onError = options.onError || (() => {});
    this.onClose = options.onClose || (() => {});
    this.debug = options.debug || (() => {});

    // state is one of State; resumeToken the token of the current session
    // (null before the first CONNECTED or after deactivate()); limits what
    // the last CONNECTED announced; stats counts what the module did.
    this.state = State.DISCONNECTED;
    this.resumeToken = null;
    this.limits = {};
    this.stats = { connects: 0, resumed: 0, duplicates: 0, ignored: 0 };
    this.lastError = null;

    this._baseHeaders = Object.assign({}, options.connectHeaders);
    this._subs = new Set(); // of Subscription, in the order they were made
    this._nextId = 1; // for subscription ids and receipts
    // ids this client replaced or dropped whose UNSUBSCRIBE has no RECEIPT
    // yet: a drop may have lost it, so a resumed session gets it again.
    this._unsubscribing = new Set();
    this._pending = new Map(); // receipt id -> { resolve, reject } of send()
    this._reconnectAfter = 0; // ms from the last ERROR's reconnect-after
    // ERRORs in a row (retryable, without reconnect-after) with no
    // connection between them that lasted: each doubles the next delay.
    this._errorStreak = 0;
    this._connectedAt = 0; // Date.now() of the last CONNECTED
    this._baseDelay = options.reconnectDelay ?? DEFAULTS.reconnectDelay;
    this._retryTimer = null; // pending activate() of a reconnect-after delay
    this._fatal = false;
    this._heartbeatIncoming = options.heartbeatIncoming ?? DEFAULTS.heartbeatIncoming;
    this._watchdog = null; // setInterval of the liveness check
    this._lastActivity = 0; // Date.now() of the last frame or heart-beat received
    this._lastCheck = 0; // Date.now() of the last liveness check

    const client = new StompJs.Client(Object.assign({
      brokerURL: options.brokerURL,
      reconnectDelay: options.reconnectDelay ?? DEFAULTS.reconnectDelay,
      heartbeatIncoming: this._heartbeatIncoming,
      // stomp.js would close the connection when its check runs late after
      // the page was suspended, before the frames that arrived meanwhile
      // are read; _checkLiveness does the check instead.
      heartbeatToleranceMultiplier: Number.MAX_SAFE_INTEGER,
      heartbeatOutgoing: options.heartbeatOutgoing ?? DEFAULTS.heartbeatOutgoing,
      connectionTimeout: options.connectionTimeout ?? DEFAULTS.connectionTimeout,
      // A connection found dead (no heart-beat) is given up at once rather
      // than through a close handshake that a dead network never finishes.
      discardWebsocketOnCommFailure: true,
    }, options.stompConfig));
    client.debug = (line) => this.debug(line);
    // The resume token changes with every CONNECTED; each attempt sends the
    // latest one.
    client.beforeConnect = () => {
      client.connectHeaders = Object.assign({}, this._baseHeaders,
        this.resumeToken ? { 'resume-token': this.resumeToken } : {});
    };
    client.onConnect = (frame) => this._connected(frame);
    client.onStompError = (frame) => this._stompError(frame);
    client.onWebSocketClose = (event) => this._closed(event);
    // MESSAGEs for a subscription id given up after a resume: the new
    // subscription delivers them (see _subscribeOn).
    client.onUnhandledMessage = () => this.stats.ignored++;
    client.onHeartbeatReceived = () => {
      this._lastActivity = Date.now();
    };
    this.client = client;
  }

  // connected reports whether a STOMP session is up.
  get connected() {
    return this.client.connected;
  }

  // activate connects, and keeps reconnecting after drops.
  activate() {
    clearTimeout(this._retryTimer);
    this._retryTimer = null;
    this._fatal = false;
    this.lastError = null;
    this._setState(State.CONNECTING);
    this.client.activate();
  }

  // deactivate disconnects (DISCONNECT, so the session ends and is not
  // resumed) and stops reconnecting. It returns stomp.js's promise.
  deactivate() {
    this._stopWatchdog();
    clearTimeout(this._retryTimer);
    this._retryTimer = null;
    this.resumeToken = null;
    const done = this.client.deactivate();
    this._setState(this._fatal ? State.ERROR : State.DISCONNECTED);
    return done;
  }

  // simulateDrop closes the WebSocket at once, without DISCONNECT, as a
  // network failure would; the client reconnects (and resumes) as after a
  // real drop.
  simulateDrop() {
    this.client.forceDisconnect();
  }

  // subscribe subscribes to destination now (if connected) and after every
  // reconnect, and calls onMessage(message) with each stomp.js message,
  // never twice for one offset. Options:
  //   history     n: on the first SUBSCRIBE, ask for the last n retained
  //               messages (header history:n) before the live ones
  //   presence    { id, info }: join the topic's presence set (presence:true,
  //               presence-id, presence-info: e.g. a display name)
  //   headers     further SUBSCRIBE headers (e.g. ack)
  //   onRecovered({ recovered, offset }): the RECEIPT of a SUBSCRIBE that
  //               resumed; recovered false means messages were lost (older
  //               than the broker retains)
  // It returns a Subscription; its unsubscribe() ends it.
  subscribe(destination, onMessage, options = {}) {
    const sub = new Subscription(this, destination, onMessage, options);
    this._subs.add(sub);
    if (this.client.connected) {
      this._subscribeOn(sub, false);
    }
    return sub;
  }

  // presence follows the presence set of a topic ('/topic/chat.lobby' or
  // 'chat.lobby') through /presence/<name>, and returns a Presence whose
  // members map is kept current. Callbacks (all optional): onJoin(member),
  // onLeave(member), onChange(members) after every change; a member is
  // { user, id, info }.
  presence(topic, handlers = {}) {
    const name = topic.startsWith('/topic/') ? topic.slice('/topic/'.length) : topic;
    const p = new Presence(handlers);
    p._sub = this.subscribe('/presence/' + name, (m) => p._onMessage(m));
    return p;
  }

  // publish sends a message (stomp.js publish parameters: destination,
  // body or binaryBody, headers) without waiting.
  publish(params) {
    this.client.publish(params);
  }

  // send publishes with a receipt and returns a promise of the RECEIPT's
  // headers. It rejects when the broker answers with an ERROR (the error
  // as onError reports it) or the connection closes first (an Error with
  // code 'connection-lost': the message may or may not have arrived; resend
  // it with the same idempotency-key header to be safe).
  send(params) {
    const id = 'sb-receipt-' + this._nextId++;
    return new Promise((resolve, reject) => {
      this._pending.set(id, { resolve, reject });
      this.client.watchForReceipt(id, (frame) => {
        this._pending.delete(id);
        resolve(Object.assign({}, frame.headers));
      });
      const headers = Object.assign({}, params.headers, { receipt: id });
      try {
        this.client.publish(Object.assign({}, params, { headers }));
      } catch (err) {
        // Not connected (stomp.js throws): nothing was sent.
        this._pending.delete(id);
        err.code = 'connection-lost';
        reject(err);
      }
    });
  }

  _setState(state) {
    if (this.state !== state) {
      this.state = state;
      this.onStateChange(state);
    }
  }

  _connected(frame) {
    const h = frame.headers;
    const resumed = h.resumed === 'true';
    this.resumeToken = h['resume-token'] || null;
    this.limits = {
      maxBody: intHeader(h['max-body']),
      maxHeaderBytes: intHeader(h['max-header-bytes']),
      maxSubscriptions: intHeader(h['max-subscriptions']),
      resumeGrace: intHeader(h['resume-grace']),
    };
    this.stats.connects++;
    if (resumed) {
      this.stats.resumed++;
      for (const id of [...this._unsubscribing]) {
        this._unsubscribe(id);
      }
    } else {
      this._unsubscribing.clear(); // a fresh session holds none of them
    }
    this._reconnectAfter = 0;
    this._connectedAt = Date.now();
    this._startWatchdog(h['heart-beat']);
    for (const sub of this._subs) {
      this._subscribeOn(sub, resumed);
    }
    this._setState(State.CONNECTED);
    this.onConnect({ resumed: resumed, headers: Object.assign({}, h) });
  }

  // subscribeOn (re)subscribes sub on the current connection. On a resumed
  // session the broker kept the subscription: repeating its SUBSCRIBE
  // (same id and destination) is a no-op there and tells stomp.js where its
  // MESSAGEs go. A subscription with offsets instead subscribes anew,
  // resuming after its last offset: messages that were on their way when
  // the socket died are not in the session's backlog, but are in the
  // topic's history. A presence stream (/presence/...) subscribes anew as
  // well: events lost with the socket are not sent again, and the new
  // snapshot sets the member list right (its difference is reported). The
  // new SUBSCRIBE goes before the old id's UNSUBSCRIBE so that a presence
  // member never has no subscription.
  _subscribeOn(sub, resumed) {
    const offset = sub._resumeOffset();
    const old = sub.stompId;
    if (resumed && old !== null && offset === null && !sub.destination.startsWith('/presence/')) {
      this.client.subscribe(sub.destination, (m) => sub._deliver(m), Object.assign({}, sub._headers(), { id: old }));
      return;
    }
    sub.stompId = 'sb-' + this._nextId++;
    const headers = Object.assign({}, sub._headers(), { id: sub.stompId });
    if (offset !== null) {
      headers['resume-after'] = offset.token;
    } else if (sub.history > 0) {
      headers.history = String(sub.history);
    }
    if (offset !== null || sub.history > 0) {
      const receipt = 'sb-receipt-' + this._nextId++;
      headers.receipt = receipt;
      this.client.watchForReceipt(receipt, (frame) => sub._receipt(frame.headers, offset !== null));
    }
    this.client.subscribe(sub.destination, (m) => sub._deliver(m), headers);
    if (resumed && old !== null) {
      this._unsubscribe(old);
    }
  }

  // unsubscribe sends UNSUBSCRIBE id with a receipt and remembers id until
  // the RECEIPT comes: after a drop that may have lost the frame, a
  // resumed session (which kept the subscription) gets it again; for
  // stompbox an UNSUBSCRIBE of an id a resumed session no longer holds is
  // a no-op, not an error.
  _unsubscribe(id) {
    this._unsubscribing.add(id);
    const receipt = 'sb-receipt-' + this._nextId++;
    this.client.watchForReceipt(receipt, () => this._unsubscribing.delete(id));
    this.client.unsubscribe(id, { receipt: receipt });
  }

  // startWatchdog checks the server's heart-beats: sx,sy from CONNECTED
  // says the server sends one at least every sx ms; the connection counts
  // as lost after twice the interval (the larger of sx and ours) without a
  // frame, as stomp.js would do.
  _startWatchdog(heartBeat) {
    this._stopWatchdog();
    const sx = Number.parseInt(String(heartBeat || '0').split(',')[0], 10) || 0;
    const ws = this.client.webSocket;
    if (this._heartbeatIncoming <= 0 || sx <= 0 || !ws) {
      return;
    }
    const ttl = Math.max(this._heartbeatIncoming, sx);
    this._lastActivity = this._lastCheck = Date.now();
    ws.addEventListener('message', () => {
      this._lastActivity = Date.now();
    });
    this._watchdog = setInterval(() => this._checkLiveness(ttl), ttl);
  }

  _stopWatchdog() {
    clearInterval(this._watchdog);
    this._watchdog = null;
  }

  // checkLiveness runs every ttl ms. When it runs much later than that, the
  // page was suspended (hidden and throttled, frozen, paused): frames that
  // arrived meanwhile may still wait in the task queue, so it judges only
  // at its next run.
  _checkLiveness(ttl) {
    const now = Date.now();
    const late = now - this._lastCheck > 2 * ttl;
    this._lastCheck = now;
    if (late) {
      this.debug('stompbox.js: the page was suspended; checking the connection at the next heart-beat');
      return;
    }
    if (now - this._lastActivity > 2 * ttl) {
      this.debug('stompbox.js: no frame from the server for ' + (now - this._lastActivity) + ' ms; reconnecting');
      this._stopWatchdog();
      this.client.forceDisconnect();
    }
  }

  _stompError(frame) {
    const h = frame.headers;
    const err = {
      code: h['error-code'] || '',
      message: h.message || 'server error',
      retryable: h.retryable !== 'false',
      fatal: h.retryable === 'false',
      reconnectAfter: intHeader(h['reconnect-after']),
      headers: Object.assign({}, h),
      body: frame.body,
    };
    this.lastError = err;
    if (err.reconnectAfter > 0) {
      this._reconnectAfter = err.reconnectAfter;
    } else if (!err.fatal) {
      // A retryable refusal (a full room, a limit) would otherwise be met
      // again every reconnectDelay by every client it refused: back off,
      // doubling up to MAX_ERROR_BACKOFF_MS, with jitter; a connection
      // that lasted STABLE_MS starts the count again.
      if (this._connectedAt > 0 && Date.now() - this._connectedAt > STABLE_MS) {
        this._errorStreak = 0;
      }
      this._errorStreak++;
      const delay = Math.min(this._baseDelay * 2 ** Math.min(this._errorStreak - 1, 16), MAX_ERROR_BACKOFF_MS);
      this._reconnectAfter = Math.max(1, Math.round(delay * (0.5 + Math.random() / 2)));
    }
    const pending = this._pending.get(h['receipt-id']);
    if (pending) {
      this._pending.delete(h['receipt-id']);
      pending.reject(err);
    }
    if (err.fatal) {
      this._stop();
    }
    this.onError(err);
  }

  // stop gives up after an error that retrying cannot fix.
  _stop() {
    this._fatal = true;
    this.resumeToken = null;
    void this.client.deactivate();
    this._setState(State.ERROR);
  }

  _closed(event) {
    this._stopWatchdog();
    this.onClose(event);
    for (const [id, p] of this._pending) {
      const err = new Error('connection lost before the RECEIPT');
      err.code = 'connection-lost';
      p.reject(err);
      this._pending.delete(id);
    }
    if (event.code === CLOSE_TOO_BIG && !this._fatal) {
      const err = {
        code: 'frame-too-large', message: 'frame too large', retryable: false, fatal: true,
        reconnectAfter: 0, headers: {}, body: 'WebSocket closed with code 1009 (message too big)',
      };
      this.lastError = err;
      this._stop();
      this.onError(err);
    }
    if (this._fatal) {
      this._setState(State.ERROR);
      return;
    }
    if (!this.client.active) {
      this._setState(State.DISCONNECTED);
      return;
    }
    this._setState(State.RECONNECTING);
    if (this._reconnectAfter > 0) {
      // stomp.js would retry after its fixed reconnectDelay: stop it (there
      // is no socket left, so deactivate() completes at once) and retry
      // when the broker said to.
      const delay = this._reconnectAfter;
      this._reconnectAfter = 0;
      void this.client.deactivate();
      this._retryTimer = setTimeout(() => {
        this._retryTimer = null;
        this.client.activate();
      }, delay);
    }
  }
}

// Subscription is one subscribe() of a StompboxClient. lastOffset is the
// offset token of the last message delivered (null before any); recovered
// what the last resuming SUBSCRIBE's RECEIPT said (null before any).
class Subscription {
  constructor(owner, destination, onMessage, options) {
    this.destination = destination;
    this.history = options.history || 0;
    this.recovered = null;
    this.stompId = null;
    this._owner = owner;
    this._onMessage = onMessage;
    this._extra = Object.assign({}, options.headers);
    this._presence = options.presence || null;
    this._onRecovered = options.onRecovered || (() => {});
    this._last = null; // parsed offset of the last delivered message
    // highest seq delivered per epoch: after a broker crash a history goes
    // on under a new epoch with its older messages (of older epochs)
    // replayed, and each is a duplicate if its own epoch has seen it.
    this._seen = new Map();
    this._receiptOffset = null; // offset:<latest> of the first RECEIPT
  }

  get lastOffset() {
    return this._last ? this._last.token : null;
  }

  // unsubscribe ends the subscription (UNSUBSCRIBE when connected).
  unsubscribe() {
    const owner = this._owner;
    owner._subs.delete(this);
    if (this.stompId !== null) {
      if (owner.client.connected) {
        owner._unsubscribe(this.stompId);
      } else {
        owner._unsubscribing.add(this.stompId); // for the session if it is resumed
      }
    }
    this.stompId = null;
  }

  _headers() {
    const h = Object.assign({}, this._extra);
    if (this._presence) {
      h.presence = 'true';
      if (this._presence.id) {
        h['presence-id'] = String(this._presence.id);
      }
      if (this._presence.info) {
        h['presence-info'] = String(this._presence.info);
      }
    }
    return h;
  }

  // resumeOffset is where a new SUBSCRIBE resumes: after the last message
  // delivered, else after the latest offset the broker reported when this
  // subscription started (nothing was delivered since, so anything after
  // it is new); null when neither is known.
  _resumeOffset() {
    return this._last || this._receiptOffset;
  }

  _receipt(h, resuming) {
    const o = parseOffset(h.offset);
    if (o !== null && this._receiptOffset === null) {
      this._receiptOffset = o;
    }
    if (resuming) {
      this.recovered = h.recovered === 'true';
      this._onRecovered({ recovered: this.recovered, offset: h.offset || null });
    }
  }

  _deliver(message) {
    if (!this._owner._subs.has(this)) {
      return;
    }
    const o = parseOffset(message.headers.offset);
    if (o !== null) {
      const seen = this._seen.get(o.epoch);
      if (seen !== undefined && compareSeq(o.seq, seen) <= 0) {
        this._owner.stats.duplicates++;
        return;
      }
      this._seen.delete(o.epoch); // re-inserted last: the map keeps the newest epochs
      this._seen.set(o.epoch, o.seq);
      if (this._seen.size > 16) {
        this._seen.delete(this._seen.keys().next().value);
      }
      this._last = o;
    }
    this._onMessage(message);
  }
}

// Presence is the member list of one topic, kept by presence().
class Presence {
  constructor(handlers) {
    // members maps user + '/' + id to { user, id, info }.
    this.members = new Map();
    this._handlers = handlers;
    this._sub = null;
  }

  // unsubscribe stops following the presence set.
  unsubscribe() {
    this._sub.unsubscribe();
  }

  _onMessage(message) {
    let body;
    try {
      body = JSON.parse(message.body);
    } catch (e) {
      return; // not a presence event
    }
    const h = this._handlers;
    switch (message.headers['presence-event']) {
      case 'snapshot': {
        // The first snapshot, or a new one after a fresh session: report
        // the difference to what was known.
        const next = new Map();
        for (const m of body.members || []) {
          next.set(memberKey(m), m);
        }
        for (const [k, m] of this.members) {
          if (!next.has(k)) {
            this.members.delete(k);
            call(h.onLeave, m);
          }
        }
        for (const [k, m] of next) {
          if (!this.members.has(k)) {
            this.members.set(k, m);
            call(h.onJoin, m);
          } else {
            this.members.set(k, m);
          }
        }
        break;
      }
      case 'join':
        if (!this.members.has(memberKey(body))) {
          this.members.set(memberKey(body), body);
          call(h.onJoin, body);
        }
        break;
      case 'leave':
        if (this.members.delete(memberKey(body))) {
          call(h.onLeave, body);
        }
        break;
      default:
        return;
    }
    call(h.onChange, this.members);
  }
}

function memberKey(m) {
  return String(m.user) + '/' + String(m.id ?? '');
}

function call(fn, arg) {
  if (fn) {
    fn(arg);
  }
}

// intHeader parses a non-negative integer header; 0 when absent or bad.
function intHeader(v) {
  const n = Number.parseInt(v, 10);
  return Number.isFinite(n) && n > 0 ? n : 0;
}
