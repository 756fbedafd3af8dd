// A stand-in for the Hugging Face hub on 127.0.0.1: it serves the SmolLM2 test model at the
// catalog's `/{owner}/{repo}/resolve/{revision}/{file}` address with the headers the real hub
// sends (X-Linked-Size, X-Linked-Etag = SHA-256, Accept-Ranges), honours Range requests, and is
// throttled so a download takes a few seconds and its progress can be watched. `HF_ENDPOINT`
// points `hearth serve` at it. Every request is recorded for the test to inspect.
import { openSync, readSync, closeSync, statSync } from 'node:fs';
import { createServer } from 'node:http';
import {
  SMOLLM2_CATALOG_REPO, SMOLLM2_FILE, SMOLLM2_PATH, SMOLLM2_SHA256, requireFile,
} from './env.mjs';

const CHUNK_BYTES = 256 * 1024;

/**
 * Starts the hub. `seconds`: about how long a whole transfer of the model takes. `anyFile`:
 * answer every `/{owner}/{repo}/resolve/{revision}/{name}.gguf` with the test model (so
 * whichever catalog model the planner recommends on this machine can be "downloaded"; the hub's
 * size and digest headers are the test model's, which is what the download checks against when
 * the catalog pins neither). Resolves `{ endpoint, requests, sentBytes(), close() }`.
 */
export async function startHub({ seconds = 6, repo = SMOLLM2_CATALOG_REPO, file = SMOLLM2_FILE, anyFile = false } = {}) {
  requireFile(SMOLLM2_PATH, 'run scripts/fetch-test-models smollm2');
  const total = statSync(SMOLLM2_PATH).size;
  const chunks = Math.ceil(total / CHUNK_BYTES);
  const delayMs = Math.max(1, Math.round((seconds * 1000) / chunks));
  const requests = [];
  const sockets = new Set();
  const filePaths = new Set(
    ['main', 'HEAD'].map((revision) => `/${repo}/resolve/${revision}/${file}`),
  );

  const server = createServer((request, response) => {
    const path = decodeURIComponent(new URL(request.url, 'http://hub').pathname);
    const record = { method: request.method, path, range: request.headers.range ?? null, at: Date.now() };
    requests.push(record);
    const served = filePaths.has(path) || (anyFile && /^\/[^/]+\/[^/]+\/resolve\/[^/]+\/.+\.gguf$/i.test(path));
    if (!served) {
      record.status = 404;
      response.writeHead(404, { 'Content-Type': 'application/json' });
      response.end(JSON.stringify({ error: 'Entry not found' }));
      return;
    }
    const linked = {
      'X-Linked-Size': String(total),
      'X-Linked-Etag': `"${SMOLLM2_SHA256}"`,
      ETag: `"${SMOLLM2_SHA256}"`,
      'Accept-Ranges': 'bytes',
      'Content-Type': 'application/octet-stream',
    };
    let start = 0;
    let end = total - 1;
    const range = /^bytes=(\d+)-(\d*)$/.exec(request.headers.range ?? '');
    if (range) {
      start = Number(range[1]);
      if (range[2]) end = Math.min(Number(range[2]), total - 1);
      if (start >= total || start > end) {
        record.status = 416;
        response.writeHead(416, { 'Content-Range': `bytes */${total}`, ...linked });
        response.end();
        return;
      }
      record.status = 206;
      response.writeHead(206, {
        ...linked,
        'Content-Length': String(end - start + 1),
        'Content-Range': `bytes ${start}-${end}/${total}`,
      });
    } else {
      record.status = 200;
      response.writeHead(200, { ...linked, 'Content-Length': String(total) });
    }
    if (request.method === 'HEAD') {
      response.end();
      return;
    }
    streamSlowly(response, start, end, delayMs, record);
  });
  server.on('connection', (socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
  });
  await new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', resolve);
  });
  const { port } = server.address();
  return {
    endpoint: `http://127.0.0.1:${port}`,
    requests,
    /** Bytes of the model sent so far, over all requests. */
    sentBytes: () => requests.reduce((sum, r) => sum + (r.sent ?? 0), 0),
    close: () =>
      new Promise((resolve) => {
        for (const socket of sockets) socket.destroy();
        server.close(() => resolve());
      }),
  };
}

function streamSlowly(response, start, end, delayMs, record) {
  const fd = openSync(SMOLLM2_PATH, 'r');
  let position = start;
  record.sent = 0;
  let timer = null;
  const finish = () => {
    clearTimeout(timer);
    try {
      closeSync(fd);
    } catch {
      // Closed already.
    }
  };
  response.on('close', finish);
  const sendNext = () => {
    if (response.destroyed) return finish();
    if (position > end) {
      response.end();
      return finish();
    }
    const length = Math.min(CHUNK_BYTES, end - position + 1);
    const buffer = Buffer.allocUnsafe(length);
    readSync(fd, buffer, 0, length, position);
    position += length;
    record.sent += length;
    const flushed = response.write(buffer);
    const next = () => (timer = setTimeout(sendNext, delayMs));
    if (flushed) next();
    else response.once('drain', next);
  };
  sendNext();
}
