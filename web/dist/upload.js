// stompbox upload demo: sends a file to /queue/upload.<queue> as binary
// SEND chunks, paced by RECEIPTs (a sliding window of at most "in flight"
// chunks without one), then a "complete" message with the file's SHA-256.
// receive.html puts it back together and checks the digest.
//
// Each chunk's headers: upload-id, chunk-index (from 0), chunk-count,
// idempotency-key (<upload-id>-<index>: a chunk resent after a reconnect is
// not queued twice). The complete message: upload-event:complete, upload-id,
// and a JSON body {name, size, chunks, sha256}.
//
// Query parameters: queue, chunk (bytes), window. window.stompboxUpload
// exposes the client and the counters of the last upload for tests.
import { StompboxClient, State } from './stompbox.js';

const ui = {
  state: byId('state'),
  queue: byId('queue'),
  chunkSize: byId('chunk-size'),
  window: byId('window'),
  file: byId('file'),
  start: byId('start'),
  error: byId('error'),
  errorDetail: byId('error-detail'),
  status: byId('status'),
  progress: byId('progress'),
  sha256: byId('sha256'),
};

function byId(id) {
  const el = document.getElementById(id);
  if (!el) {
    throw new Error('stompbox upload: missing element #' + id);
  }
  return el;
}

const params = new URLSearchParams(location.search);
ui.queue.value = queueName(params.get('queue') || ui.queue.value) || 'uploads';
if (params.get('chunk')) {
  ui.chunkSize.value = params.get('chunk');
}
if (params.get('window')) {
  ui.window.value = params.get('window');
}

// stats counts what the last upload did: SEND frames sent (resends
// included), RECEIPTs, the most chunks in flight at once.
const stats = { sends: 0, receipts: 0, maxInFlight: 0, chunks: 0 };
let uploading = false;

const sb = new StompboxClient({
  brokerURL: (location.protocol === 'https:' ? 'wss://' : 'ws://') + location.host + '/ws',
  onStateChange: (state) => {
    ui.state.textContent = state;
    ui.state.dataset.state = state;
    ui.start.disabled = state !== State.CONNECTED || uploading;
  },
  onError: (err) => {
    if (err.code === 'frame-too-large') {
      showError('chunk too large: the broker refused it (frame-too-large); not retrying',
        err.message + (sb.limits.maxBody ? ' (the broker takes bodies up to ' + sb.limits.maxBody + ' bytes)' : ''));
    } else {
      showError('error: ' + err.message + (err.fatal ? '; not retrying' : '; reconnecting'), String(err.body || ''));
    }
  },
});

ui.start.addEventListener('click', () => {
  const file = ui.file.files[0];
  if (!file || uploading) {
    return;
  }
  uploading = true;
  ui.start.disabled = true;
  upload(file).then(
    () => setStatus('done'),
    (err) => {
      setStatus('failed');
      if (!ui.error.textContent) {
        showError('upload failed', err.message || String(err));
      }
    },
  ).finally(() => {
    uploading = false;
    ui.start.disabled = sb.state !== State.CONNECTED;
  });
});

async function upload(file) {
  showError('', '');
  Object.assign(stats, { sends: 0, receipts: 0, maxInFlight: 0, chunks: 0 });
  const chunkSize = Math.max(1, Number.parseInt(ui.chunkSize.value, 10) || 65536);
  const inFlight = Math.max(1, Math.min(64, Number.parseInt(ui.window.value, 10) || 8));
  const destination = '/queue/upload.' + (queueName(ui.queue.value) || 'uploads');
  const bytes = new Uint8Array(await file.arrayBuffer());
  const sha256 = await digest(bytes);
  ui.sha256.textContent = sha256;
  const uploadId = crypto.randomUUID();
  const count = Math.ceil(bytes.length / chunkSize);
  stats.chunks = count;
  setStatus('uploading');

  // The sliding window: "inFlight" lanes each send the next chunk not yet
  // taken and wait for its RECEIPT before taking another.
  let next = 0;
  let done = 0;
  let waiting = 0;
  const lane = async () => {
    while (next < count) {
      const i = next++;
      waiting++;
      stats.maxInFlight = Math.max(stats.maxInFlight, waiting);
      await sendReliably({
        destination: destination,
        binaryBody: bytes.subarray(i * chunkSize, Math.min(bytes.length, (i + 1) * chunkSize)),
        headers: {
          'content-type': 'application/octet-stream',
          'upload-id': uploadId,
          'chunk-index': String(i),
          'chunk-count': String(count),
          'idempotency-key': uploadId + '-' + i,
        },
      });
      waiting--;
      done++;
      ui.progress.textContent = done + ' / ' + count + ' chunks';
    }
  };
  await Promise.all(Array.from({ length: Math.min(inFlight, Math.max(count, 1)) }, lane));
  await sendReliably({
    destination: destination,
    body: JSON.stringify({ name: file.name, size: bytes.length, chunks: count, sha256: sha256 }),
    headers: {
      'content-type': 'application/json',
      'upload-event': 'complete',
      'upload-id': uploadId,
      'idempotency-key': uploadId + '-complete',
    },
  });
  ui.progress.textContent = count + ' / ' + count + ' chunks, complete';
}

// sendReliably sends with a receipt and, when the connection is lost before
// it (the broker may or may not have the message), sends again once
// reconnected: the idempotency-key makes that safe. An ERROR (e.g.
// frame-too-large) or a stopped client ends the upload.
async function sendReliably(params) {
  for (;;) {
    await connected();
    stats.sends++;
    try {
      await sb.send(params);
      stats.receipts++;
      return;
    } catch (err) {
      if (err.code !== 'connection-lost' || sb.state === State.ERROR) {
        throw err;
      }
    }
  }
}

// connected resolves once the client is connected; it rejects when the
// client has stopped (an error not worth retrying, or the user's deactivate).
function connected() {
  return new Promise((resolve, reject) => {
    (function poll() {
      if (sb.connected) {
        resolve();
      } else if (sb.state === State.ERROR || sb.state === State.DISCONNECTED) {
        reject(new Error('not connected: ' + sb.state));
      } else {
        setTimeout(poll, 50);
      }
    })();
  });
}

async function digest(bytes) {
  const hash = new Uint8Array(await crypto.subtle.digest('SHA-256', bytes));
  return Array.from(hash, (b) => b.toString(16).padStart(2, '0')).join('');
}

function setStatus(s) {
  ui.status.textContent = s;
}

function showError(text, detail) {
  ui.error.textContent = text;
  ui.errorDetail.textContent = detail || '';
}

function queueName(raw) {
  return String(raw).trim().replace(/[^A-Za-z0-9_-]+/g, '-').replace(/^-+|-+$/g, '').slice(0, 64);
}

window.stompboxUpload = { stompbox: sb, stats: stats };
sb.activate();
