// stompbox receive demo: takes the chunks upload.html sends to
// /queue/upload.<queue>, puts each file together by chunk-index, and once
// its "complete" message has come checks the SHA-256 it names against the
// bytes received (crypto.subtle). Each file is listed in #uploads with its
// name, size and whether the digest matched; a link saves it.
//
// Query parameter: queue. window.stompboxReceive exposes the client and
// the finished uploads for tests.
import { StompboxClient, State } from './stompbox.js';

// MAX_BYTES bounds what one upload may hold in this page's memory.
const MAX_BYTES = 256 << 20;

const ui = {
  state: byId('state'),
  queue: byId('queue'),
  error: byId('error'),
  errorDetail: byId('error-detail'),
  status: byId('status'),
  progress: byId('progress'),
  uploads: byId('uploads'),
};

function byId(id) {
  const el = document.getElementById(id);
  if (!el) {
    throw new Error('stompbox receive: missing element #' + id);
  }
  return el;
}

const params = new URLSearchParams(location.search);
ui.queue.value = queueName(params.get('queue') || ui.queue.value) || 'uploads';

// pending maps upload-id to { chunks: Map index -> bytes, count, bytes, meta }.
const pending = new Map();
// finished lists the uploads checked: { id, name, size, sha256, expected, match }.
const finished = [];

const sb = new StompboxClient({
  brokerURL: (location.protocol === 'https:' ? 'wss://' : 'ws://') + location.host + '/ws',
  onStateChange: (state) => {
    ui.state.textContent = state;
    ui.state.dataset.state = state;
  },
  onError: (err) => showError('error: ' + err.message, String(err.body || '')),
});

let subscription = sb.subscribe(destination(), onMessage);
ui.queue.addEventListener('change', () => {
  ui.queue.value = queueName(ui.queue.value) || 'uploads';
  subscription.unsubscribe();
  pending.clear();
  subscription = sb.subscribe(destination(), onMessage);
});

function destination() {
  return '/queue/upload.' + ui.queue.value;
}

function onMessage(message) {
  const h = message.headers;
  const id = h['upload-id'];
  if (!id) {
    return;
  }
  let u = pending.get(id);
  if (!u) {
    u = { chunks: new Map(), count: -1, bytes: 0, meta: null };
    pending.set(id, u);
  }
  if (h['upload-event'] === 'complete') {
    try {
      u.meta = JSON.parse(message.body);
      if (!Number.isInteger(u.meta.chunks) || u.meta.chunks < 0) {
        throw new Error('no chunk count');
      }
      u.count = u.meta.chunks;
    } catch (e) {
      pending.delete(id);
      showError('bad complete message for upload ' + id, String(e));
      return;
    }
  } else {
    const i = Number.parseInt(h['chunk-index'], 10);
    const count = Number.parseInt(h['chunk-count'], 10);
    if (!(i >= 0 && i < count)) {
      return; // not a chunk of ours
    }
    if (!u.chunks.has(i)) {
      u.bytes += message.binaryBody.length;
      if (u.bytes > MAX_BYTES) {
        pending.delete(id);
        showError('upload ' + id + ' is too large for this page', 'more than ' + MAX_BYTES + ' bytes');
        return;
      }
      // binaryBody is a view into the frame's buffer; keep a copy.
      u.chunks.set(i, message.binaryBody.slice());
    }
    u.count = count;
  }
  ui.status.textContent = 'receiving';
  ui.progress.textContent = u.chunks.size + ' / ' + (u.count >= 0 ? u.count : '?') + ' chunks';
  if (u.meta && u.chunks.size === u.count) {
    pending.delete(id);
    void finish(id, u);
  }
}

async function finish(id, u) {
  const whole = new Uint8Array(u.bytes);
  let at = 0;
  for (let i = 0; i < u.count; i++) {
    const chunk = u.chunks.get(i);
    if (!chunk) {
      showError('upload ' + id + ' is inconsistent', 'chunk ' + i + ' of ' + u.count + ' is missing');
      return;
    }
    whole.set(chunk, at);
    at += chunk.length;
  }
  const hash = new Uint8Array(await crypto.subtle.digest('SHA-256', whole));
  const sha256 = Array.from(hash, (b) => b.toString(16).padStart(2, '0')).join('');
  const r = {
    id: id, name: String(u.meta.name), size: whole.length, sha256: sha256,
    expected: String(u.meta.sha256), match: sha256 === u.meta.sha256 && whole.length === u.meta.size,
  };
  finished.push(r);
  ui.status.textContent = r.match ? 'complete' : 'mismatch';
  const li = document.createElement('li');
  li.dataset.sha256 = sha256;
  li.dataset.match = String(r.match);
  const link = document.createElement('a');
  link.href = URL.createObjectURL(new Blob([whole]));
  link.download = r.name;
  link.textContent = r.name;
  li.append(link, ' ' + r.size + ' bytes, SHA-256 ' + sha256 +
    (r.match ? ' matches' : ' does NOT match ' + r.expected));
  ui.uploads.append(li);
}

function showError(text, detail) {
  ui.error.textContent = text;
  ui.errorDetail.textContent = detail || '';
}

function queueName(raw) {
  return String(raw).trim().replace(/[^A-Za-z0-9_-]+/g, '-').replace(/^-+|-+$/g, '').slice(0, 64);
}

window.stompboxReceive = { stompbox: sb, finished: finished, State: State };
sb.activate();
