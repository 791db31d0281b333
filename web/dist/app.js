// stompbox demo chat.
//
// Runs on the global StompJs from the vendored UMD bundle (@stomp/stompjs,
// see web/package.json). Each room is the topic /topic/chat.<room>; a message
// is JSON {name, text, sentAt} with content-type application/json.
//
// Connection state, shown in #state: connecting (first attempt or after the
// user reconnects), connected, reconnecting (the socket closed and stomp.js
// will retry after reconnectDelay), disconnected (the user disconnected), error
// (an error that retrying would not fix; the client is deactivated). The last
// WebSocket close code is shown in #close-code.
//
// Optional query parameters: name, room, debug=1 (stomp.js debug log on the
// console). window.stompboxChat exposes the client for tests and the console.
(function () {
  'use strict';

  const DEFAULT_ROOM = 'lobby';
  const TOPIC_PREFIX = '/topic/chat.';
  const RECONNECT_DELAY_MS = 2000;
  const HEARTBEAT_MS = 10000;
  // Messages kept on screen; older ones are dropped so a long session stays small.
  const MAX_MESSAGES = 500;

  // RFC 6455 7.4.1: 1009 "indicates that an endpoint is terminating the
  // connection because it has received a message that is too big for it to
  // process". stompbox sends it after an ERROR frame with error-code
  // frame-too-large, or alone when a WebSocket message is over the limit.
  const CLOSE_TOO_BIG = 1009;
  const ERROR_CODE_TOO_LARGE = 'frame-too-large';
  const TOO_LARGE_TEXT = 'message too large';

  const ui = {
    state: byId('state'),
    closeCode: byId('close-code'),
    closeReason: byId('close-reason'),
    toggle: byId('toggle'),
    name: byId('name'),
    room: byId('room'),
    destination: byId('destination'),
    error: byId('error'),
    errorDetail: byId('error-detail'),
    messages: byId('messages'),
    composer: byId('composer'),
    text: byId('text'),
    send: byId('send'),
    brokerURL: byId('broker-url'),
  };

  // The current room's subscription on the current connection; null while
  // disconnected. A subscription never outlives its connection: stomp.js
  // does not resubscribe, so onConnect subscribes again.
  let subscription = null;
  // Set when an error must not be retried; cleared when the user reconnects.
  let fatal = false;

  function byId(id) {
    const el = document.getElementById(id);
    if (!el) {
      throw new Error('stompbox chat: missing element #' + id);
    }
    return el;
  }

  if (typeof StompJs === 'undefined') {
    // The server answers 503 for the page itself when the bundle is missing,
    // so this is only reached when the files are served some other way.
    fatal = true;
    setState('error');
    ui.toggle.disabled = true;
    showError('stomp.js is not loaded', 'vendor/stomp.umd.min.js is missing: run `make web`, then rebuild stompbox.');
    return;
  }

  const params = new URLSearchParams(location.search);
  // Same host and port as the page, so the demo works on localhost, 127.0.0.1
  // or any name the listener is reached by.
  const brokerURL = (location.protocol === 'https:' ? 'wss://' : 'ws://') + location.host + '/ws';

  let room = roomName(params.get('room') || DEFAULT_ROOM) || DEFAULT_ROOM;

  ui.name.value = params.get('name') || 'guest-' + Math.floor(1000 + Math.random() * 9000);
  ui.room.value = room;
  ui.destination.textContent = TOPIC_PREFIX + room;
  ui.brokerURL.textContent = brokerURL;

  const client = new StompJs.Client({
    brokerURL: brokerURL,
    // stomp.js offers the v12.stomp, v11.stomp and v10.stomp subprotocols
    // and the matching accept-version itself.
    reconnectDelay: RECONNECT_DELAY_MS,
    heartbeatIncoming: HEARTBEAT_MS,
    heartbeatOutgoing: HEARTBEAT_MS,
  });
  if (params.get('debug') === '1') {
    client.debug = (line) => console.log('stomp:', line);
  }

  client.onConnect = () => {
    fatal = false;
    clearError();
    subscription = null; // the previous connection's subscription died with it
    subscribe();
    setState('connected');
  };

  client.onStompError = (frame) => {
    const h = frame.headers;
    const code = h['error-code'] || '';
    const message = h.message || 'server error';
    const detail = [message, frame.body.trim()].filter(Boolean).join(' \u2014 ') +
      (code ? ' [' + code + ']' : '');
    if (code === ERROR_CODE_TOO_LARGE) {
      stopOnError(TOO_LARGE_TEXT, detail);
      return;
    }
    // stompbox marks every ERROR with retryable: true|false. Without the
    // header (another broker) stomp.js's default applies: reconnect.
    if (h.retryable === 'false') {
      stopOnError('error: ' + message, detail + ' Not retrying.');
      return;
    }
    setState('error');
    showError('error: ' + message, detail + ' Reconnecting.');
  };

  client.onWebSocketClose = (event) => {
    subscription = null;
    ui.closeCode.textContent = String(event.code);
    ui.closeReason.textContent = event.reason || '';
    if (event.code === CLOSE_TOO_BIG && !fatal) {
      stopOnError(TOO_LARGE_TEXT, 'WebSocket closed with code 1009 (message too big)');
    }
    // stomp.js calls this before scheduling a reconnect, and schedules none
    // once deactivate() has been called.
    if (fatal) {
      setState('error');
    } else if (client.active) {
      setState('reconnecting');
    } else {
      setState('disconnected');
    }
  };

  ui.composer.addEventListener('submit', (event) => {
    event.preventDefault();
    const text = ui.text.value;
    if (text.trim() === '' || !client.connected) {
      return;
    }
    send(text);
    ui.text.value = '';
    ui.text.focus();
  });

  ui.room.addEventListener('change', () => {
    const next = roomName(ui.room.value);
    if (!next) {
      ui.room.value = room;
      return;
    }
    ui.room.value = next;
    if (next === room) {
      return;
    }
    if (subscription) {
      subscription.unsubscribe();
      subscription = null;
    }
    room = next;
    ui.destination.textContent = TOPIC_PREFIX + room;
    ui.messages.replaceChildren();
    if (client.connected) {
      subscribe();
    }
  });

  ui.toggle.addEventListener('click', () => {
    if (client.active) {
      fatal = false;
      void client.deactivate().then(() => setState('disconnected'));
    } else {
      connect();
    }
  });

  function connect() {
    fatal = false;
    clearError();
    setState('connecting');
    client.activate();
  }

  function subscribe() {
    subscription = client.subscribe(TOPIC_PREFIX + room, onMessage);
  }

  // send publishes text to the current room as the name in #name.
  function send(text) {
    client.publish({
      destination: TOPIC_PREFIX + room,
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({
        name: ui.name.value.trim() || 'anonymous',
        text: text,
        sentAt: new Date().toISOString(),
      }),
    });
  }

  function onMessage(message) {
    let m = null;
    try {
      m = JSON.parse(message.body);
    } catch (e) {
      // Not ours (anyone may publish to the topic): show the raw body.
    }
    if (m === null || typeof m !== 'object') {
      m = { name: '?', text: message.body };
    }
    appendMessage(String(m.name ?? '?'), String(m.text ?? ''), m.sentAt);
  }

  function appendMessage(name, text, sentAt) {
    const li = document.createElement('li');
    li.dataset.name = name;
    if (name === ui.name.value.trim()) {
      li.classList.add('mine');
    }
    const who = document.createElement('span');
    who.className = 'who';
    who.textContent = name;
    const body = document.createElement('span');
    body.className = 'text';
    body.textContent = text;
    li.append(who, body);
    const when = new Date(sentAt);
    if (!Number.isNaN(when.getTime())) {
      const time = document.createElement('time');
      time.dateTime = when.toISOString();
      time.textContent = when.toLocaleTimeString();
      li.append(time);
    }

    const list = ui.messages;
    const atBottom = list.scrollTop + list.clientHeight >= list.scrollHeight - 4;
    list.append(li);
    while (list.childElementCount > MAX_MESSAGES) {
      list.firstElementChild.remove();
    }
    if (atBottom) {
      list.scrollTop = list.scrollHeight;
    }
  }

  // stopOnError shows an error that retrying would only repeat (a message
  // over the size limit would be refused again) and stops reconnecting.
  function stopOnError(text, detail) {
    fatal = true;
    setState('error');
    showError(text, detail);
    void client.deactivate();
  }

  function setState(state) {
    ui.state.textContent = state;
    ui.state.dataset.state = state;
    ui.send.disabled = state !== 'connected';
    // Connect when stomp.js has given up (the user disconnected, or an error
    // that is not retried); Disconnect while it is connected or retrying.
    ui.toggle.textContent = state === 'disconnected' || fatal ? 'Connect' : 'Disconnect';
  }

  function showError(text, detail) {
    ui.error.textContent = text;
    ui.errorDetail.textContent = detail || '';
  }

  function clearError() {
    showError('', '');
  }

  // roomName makes a room usable as one segment of a topic name: dots would
  // nest it and * or # would make a wildcard subscription. Returns '' when
  // nothing usable is left.
  function roomName(raw) {
    return String(raw).trim().replace(/[^A-Za-z0-9_-]+/g, '-').replace(/^-+|-+$/g, '').slice(0, 64);
  }

  window.stompboxChat = {
    client: client,
    send: send,
    room: () => room,
  };

  connect();
})();
