// Helpers for the browser scenarios in browser_test.go, installed as
// window.e2e on a page of the broker under test (the demo page, which has
// loaded the StompJs global from the vendored @stomp/stompjs bundle).
//
// Every client talks to the broker only through stomp.js, on
// ws://<this page's host>/ws, so the origin check sees a same-host page.
// Every wait has a deadline: a scenario's promise settles with an Error
// naming what it waited for rather than hanging until Go gives up.
(function () {
  'use strict';

  if (window.e2e) {
    return;
  }
  if (typeof StompJs === 'undefined') {
    throw new Error('e2e harness: StompJs is not loaded (run `make web`, then rebuild stompbox)');
  }

  // WAIT_MS bounds each wait unless a scenario says otherwise; the Go side
  // bounds the whole scenario with a longer timeout.
  const WAIT_MS = 5000;
  let seq = 0;

  // unique returns a fresh name, e.g. a destination segment that no other
  // scenario (or earlier run against the same broker) uses.
  function unique(prefix) {
    seq++;
    return prefix + '.' + Date.now().toString(36) + '-' + seq;
  }

  function sleep(ms) {
    return new Promise((resolve) => setTimeout(resolve, ms));
  }

  // waitFor polls cond every few milliseconds until it returns something
  // truthy (resolving with it) or ms pass (rejecting, naming what).
  function waitFor(what, cond, ms = WAIT_MS) {
    return new Promise((resolve, reject) => {
      const start = performance.now();
      (function poll() {
        let v;
        try {
          v = cond();
        } catch (err) {
          reject(err);
          return;
        }
        if (v) {
          resolve(v);
        } else if (performance.now() - start > ms) {
          reject(new Error('timed out after ' + ms + ' ms waiting for ' + what));
        } else {
          setTimeout(poll, 5);
        }
      })();
    });
  }

  // within settles like promise, or rejects naming what after ms.
  function within(what, promise, ms = WAIT_MS) {
    let timer;
    const timeout = new Promise((_, reject) => {
      timer = setTimeout(() => reject(new Error('timed out after ' + ms + ' ms waiting for ' + what)), ms);
    });
    return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
  }

  // The callbacks client() records; a scenario's own, passed in config,
  // run after the recording.
  const HOOKS = ['onConnect', 'onStompError', 'onWebSocketClose', 'onHeartbeatReceived', 'onHeartbeatLost'];

  // client builds (without activating) a stomp.js Client for this page's
  // broker. Automatic reconnection and heart-beats are off unless config
  // turns them on. What happens to the client is recorded in client.ev:
  //   connected  CONNECTED headers and the WebSocket subprotocol, per connect
  //   errors     ERROR frames (headers, body)
  //   closes     WebSocket close events (code, reason, wasClean)
  //   heartbeats heart-beats received; heartbeatsLost: stomp.js's verdicts
  //              that the server went silent; pings: heart-beats sent
  //   ws         inbound WebSocket messages other than heart-beats: the
  //              message type (text or binary), size and STOMP command
  //   unhandled  MESSAGE frames no subscription claimed
  function client(config = {}) {
    const ev = {
      connected: [], errors: [], closes: [], heartbeats: 0, heartbeatsLost: 0, pings: 0, ws: [], unhandled: [],
    };
    const own = {};
    const conf = Object.assign({}, config);
    for (const h of HOOKS) {
      own[h] = conf[h];
      delete conf[h];
    }
    const c = new StompJs.Client(Object.assign({
      brokerURL: (location.protocol === 'https:' ? 'wss://' : 'ws://') + location.host + '/ws',
      reconnectDelay: 0,
      heartbeatIncoming: 0,
      heartbeatOutgoing: 0,
      connectionTimeout: WAIT_MS,
      // stomp.js reports each heart-beat it sends only through debug.
      debug: (line) => {
        if (line === '>>> PING') {
          ev.pings++;
        }
      },
    }, conf));
    c.onConnect = (frame) => {
      const ws = c.webSocket;
      ev.connected.push({ headers: Object.assign({}, frame.headers), protocol: ws ? ws.protocol : null });
      if (ws) {
        ws.addEventListener('message', (e) => recordInbound(ev, e.data));
      }
      if (own.onConnect) {
        own.onConnect(frame);
      }
    };
    c.onStompError = (frame) => {
      ev.errors.push({ headers: Object.assign({}, frame.headers), body: frame.body });
      if (own.onStompError) {
        own.onStompError(frame);
      }
    };
    c.onWebSocketClose = (e) => {
      ev.closes.push({ code: e.code, reason: e.reason, wasClean: e.wasClean });
      if (own.onWebSocketClose) {
        own.onWebSocketClose(e);
      }
    };
    c.onHeartbeatReceived = () => {
      ev.heartbeats++;
      if (own.onHeartbeatReceived) {
        own.onHeartbeatReceived();
      }
    };
    c.onHeartbeatLost = () => {
      ev.heartbeatsLost++;
      if (own.onHeartbeatLost) {
        own.onHeartbeatLost();
      }
    };
    c.onUnhandledMessage = (m) => ev.unhandled.push(m.headers.destination);
    c.ev = ev;
    return c;
  }

  // recordInbound notes one inbound WebSocket message (heart-beats, a lone
  // EOL, are counted by stomp.js and skipped here).
  function recordInbound(ev, data) {
    let kind;
    let size;
    let head;
    if (typeof data === 'string') {
      kind = 'text';
      size = data.length;
      head = data.slice(0, 16);
    } else {
      kind = 'binary';
      size = data.byteLength;
      head = new TextDecoder().decode(new Uint8Array(data, 0, Math.min(16, data.byteLength)));
    }
    if (head === '\n' || head === '\r\n') {
      return;
    }
    const nl = head.indexOf('\n');
    ev.ws.push({ kind: kind, size: size, command: nl < 0 ? head : head.slice(0, nl) });
  }

  // connect activates a new client and resolves once it is CONNECTED.
  async function connect(config = {}) {
    const c = client(config);
    c.activate();
    await waitFor('CONNECTED', () => c.connected || c.ev.closes.length > 0);
    if (!c.connected) {
      throw new Error('not connected: ' + JSON.stringify(c.ev));
    }
    return c;
  }

  // receipt reserves a fresh receipt id on c: it returns the id to put in
  // a frame's receipt header and a promise of the RECEIPT's headers.
  function receipt(c, what) {
    const id = unique('receipt');
    const got = new Promise((resolve) => c.watchForReceipt(id, (frame) => resolve(Object.assign({}, frame.headers))));
    return [id, within('RECEIPT for ' + what, got)];
  }

  // subscribe subscribes c to destination and resolves with the
  // subscription once the broker's RECEIPT says it is in place.
  async function subscribe(c, destination, onMessage, headers = {}) {
    const [id, got] = receipt(c, 'SUBSCRIBE ' + destination);
    const sub = c.subscribe(destination, onMessage, Object.assign({ receipt: id }, headers));
    await got;
    return sub;
  }

  // publish sends a message with a receipt and resolves with the RECEIPT's
  // headers: the broker has taken the SEND.
  function publish(c, params) {
    const [id, got] = receipt(c, 'SEND ' + params.destination);
    c.publish(Object.assign({}, params, { headers: Object.assign({}, params.headers, { receipt: id }) }));
    return got;
  }

  // close deactivates clients: DISCONNECT with a receipt (so everything the
  // broker sent before it has arrived), then the socket closes. A client
  // that does not finish in time is dropped and the returned promise
  // rejects.
  async function close(...clients) {
    const results = await Promise.allSettled(clients.map((c) => within('DISCONNECT of a client', c.deactivate())));
    const failed = results.filter((r) => r.status === 'rejected');
    if (failed.length > 0) {
      await Promise.allSettled(clients.map((c) => c.deactivate({ force: true })));
      throw failed[0].reason;
    }
  }

  window.e2e = {
    WAIT_MS, unique, sleep, waitFor, within, client, connect, receipt, subscribe, publish, close,
  };
})();
