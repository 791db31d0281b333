// stompbox demo chat.
//
// An ES module on stompbox.js (the reconnect-proof layer over stomp.js, whose
// UMD bundle index.html loads first). Each room is the topic
// /topic/chat.<room>; a message is JSON {name, text, sentAt} with
// content-type application/json.
//
// On joining a room the page asks for the last 50 messages (history:50, when
// the broker keeps history for /topic/chat.#), joins the room's presence set
// with its display name (presence-info) and follows /presence/chat.<room> for
// the "Online" list. After a drop stompbox.js resumes the session and each
// subscription after its last offset: no message is missed or shown twice,
// and a drop shorter than the broker's presence grace period makes nobody
// leave. "Simulate network drop" closes the WebSocket abruptly to show it.
//
// Connection state, shown in #state: connecting, connected, reconnecting,
// disconnected (the user disconnected), error (an error that retrying would
// not fix; the client has stopped). The last WebSocket close code is shown in
// #close-code.
//
// Optional query parameters: name, room, debug=1 (stomp.js debug log on the
// console). window.stompboxChat exposes the clients for tests and the console.
import { StompboxClient, State } from './stompbox.js';

const DEFAULT_ROOM = 'lobby';
const TOPIC_PREFIX = '/topic/chat.';
const RECONNECT_DELAY_MS = 2000;
const HEARTBEAT_MS = 10000;
// Recent messages asked for on joining a room.
const HISTORY = 50;
// Messages kept on screen; older ones are dropped so a long session stays small.
const MAX_MESSAGES = 500;
const ERROR_CODE_TOO_LARGE = 'frame-too-large';
const TOO_LARGE_TEXT = 'message too large';

const ui = {
  state: byId('state'),
  closeCode: byId('close-code'),
  closeReason: byId('close-reason'),
  toggle: byId('toggle'),
  drop: byId('drop'),
  name: byId('name'),
  room: byId('room'),
  destination: byId('destination'),
  error: byId('error'),
  errorDetail: byId('error-detail'),
  messages: byId('messages'),
  members: byId('members'),
  onlineCount: byId('online-count'),
  composer: byId('composer'),
  text: byId('text'),
  send: byId('send'),
  brokerURL: byId('broker-url'),
};

function byId(id) {
  const el = document.getElementById(id);
  if (!el) {
    throw new Error('stompbox chat: missing element #' + id);
  }
  return el;
}

const params = new URLSearchParams(location.search);
// Same host and port as the page, so the demo works on localhost, 127.0.0.1
// or any name the listener is reached by.
const brokerURL = (location.protocol === 'https:' ? 'wss://' : 'ws://') + location.host + '/ws';
// This tab's presence-id: several tabs of one user are several members.
const tabId = Math.random().toString(36).slice(2, 10);

let room = roomName(params.get('room') || DEFAULT_ROOM) || DEFAULT_ROOM;
ui.name.value = params.get('name') || 'guest-' + Math.floor(1000 + Math.random() * 9000);
ui.room.value = room;
ui.destination.textContent = TOPIC_PREFIX + room;
ui.brokerURL.textContent = brokerURL;

let sb = null;
// established says a connection of the client is (or was, until its close)
// connected.
let established = false;
try {
  sb = new StompboxClient({
    brokerURL: brokerURL,
    reconnectDelay: RECONNECT_DELAY_MS,
    heartbeatIncoming: HEARTBEAT_MS,
    heartbeatOutgoing: HEARTBEAT_MS,
    onStateChange: setState,
    onConnect: () => {
      established = true;
      clearError();
    },
    onError: showStompError,
    onClose: (event) => {
      // Why the last connection ended: an attempt to reconnect that never
      // connected (the server still down) must not hide it.
      if (!established) {
        return;
      }
      established = false;
      ui.closeCode.textContent = String(event.code);
      ui.closeReason.textContent = event.reason || '';
    },
  });
} catch (err) {
  // The server answers 503 for the page itself when the bundle is missing,
  // so this is only reached when the files are served some other way.
  setState(State.ERROR);
  ui.toggle.disabled = true;
  ui.drop.disabled = true;
  showError('stomp.js is not loaded', 'vendor/stomp.umd.min.js is missing: run `make web`, then rebuild stompbox.');
  throw err;
}
if (params.get('debug') === '1') {
  sb.debug = (line) => console.log('stomp:', line);
}

// The current room's message subscription and presence list.
let messages = null;
let presence = null;
join();

ui.composer.addEventListener('submit', (event) => {
  event.preventDefault();
  const text = ui.text.value;
  if (text.trim() === '' || !sb.connected) {
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
  messages.unsubscribe();
  presence.unsubscribe();
  room = next;
  ui.destination.textContent = TOPIC_PREFIX + room;
  ui.messages.replaceChildren();
  join();
});

ui.toggle.addEventListener('click', () => {
  if (sb.state === State.DISCONNECTED || sb.state === State.ERROR) {
    clearError();
    sb.activate();
  } else {
    void sb.deactivate();
  }
});

ui.drop.addEventListener('click', () => sb.simulateDrop());

// join subscribes to the current room (with recent history and presence)
// and follows who is in it.
function join() {
  messages = sb.subscribe(TOPIC_PREFIX + room, onMessage, {
    history: HISTORY,
    presence: { id: tabId, info: ui.name.value.trim() || 'anonymous' },
    onRecovered: (r) => {
      if (!r.recovered) {
        showError('some messages were lost', 'The broker no longer had every message sent while this page was away.');
      }
    },
  });
  presence = sb.presence(TOPIC_PREFIX + room, { onChange: showMembers });
  showMembers(presence.members);
}

// send publishes text to the current room as the name in #name.
function send(text) {
  sb.publish({
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
  appendMessage(String(m.name ?? '?'), String(m.text ?? ''), m.sentAt, message.headers.replayed === 'true');
}

function appendMessage(name, text, sentAt, replayed) {
  const li = document.createElement('li');
  li.dataset.name = name;
  if (name === ui.name.value.trim()) {
    li.classList.add('mine');
  }
  if (replayed) {
    li.classList.add('replayed');
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

// showMembers lists who is online: one entry per member (user and tab),
// by display name.
function showMembers(members) {
  const items = [...members.values()]
    .map((m) => ({ m, label: m.info || m.user || '?' }))
    .sort((a, b) => a.label.localeCompare(b.label));
  ui.members.replaceChildren(...items.map(({ m, label }) => {
    const li = document.createElement('li');
    li.textContent = label;
    li.dataset.user = m.user ?? '';
    li.dataset.id = m.id ?? '';
    if (m.id === tabId) {
      li.classList.add('me');
    }
    return li;
  }));
  ui.onlineCount.textContent = String(items.length);
}

// showStompError shows an ERROR frame; stompbox.js has already stopped
// reconnecting when it is not retryable.
function showStompError(err) {
  const detail = [err.message, String(err.body || '').trim()].filter(Boolean).join(' \u2014 ') +
    (err.code ? ' [' + err.code + ']' : '');
  if (err.code === ERROR_CODE_TOO_LARGE) {
    showError(TOO_LARGE_TEXT, detail);
  } else if (err.fatal) {
    showError('error: ' + err.message, detail + ' Not retrying.');
  } else {
    showError('error: ' + err.message, detail + ' Reconnecting' +
      (err.reconnectAfter ? ' in ' + (err.reconnectAfter / 1000).toFixed(1) + ' s.' : '.'));
  }
}

function setState(state) {
  ui.state.textContent = state;
  ui.state.dataset.state = state;
  ui.send.disabled = state !== State.CONNECTED;
  ui.drop.disabled = state !== State.CONNECTED;
  // Connect when the client has stopped (the user disconnected, or an
  // error that is not retried); Disconnect while connected or retrying.
  ui.toggle.textContent = state === State.DISCONNECTED || state === State.ERROR ? 'Connect' : 'Disconnect';
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
  client: sb.client, // the stomp.js Client
  stompbox: sb,
  send: send,
  room: () => room,
};

sb.activate();
