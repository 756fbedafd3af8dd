// Offline means offline, audited from the kernel's side: `hearth serve` (and the engine worker
// it starts) runs under `strace -f -e trace=connect` while the UI and the API are used the way
// a person would use them (every page, a chat, regenerate, the model list with its catalog and
// fit badges, the hardware report, settings). Every connect() must go to 127.0.0.1, ::1 or a
// unix socket, and the hub must not be asked for anything before a download is started. As a
// control that the trace sees the server's sockets, a download from a loopback hub is started
// last and its connections must appear in the trace.
import assert from 'node:assert/strict';
import { mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { api, apiOk, createConversation, sendMessage, streamEvents } from './lib/api.mjs';
import { e2eTest } from './lib/e2e.mjs';
import { OUTPUT_DIR, SMOLLM2_CATALOG_ID } from './lib/env.mjs';
import { startHub } from './lib/hub.mjs';
import { parseConnects, straceOptions, straceWrap, summarizeConnects } from './lib/strace.mjs';
import { byId, openConversation, send, waitForAnswerDone } from './lib/ui.mjs';

const API_ONLY = process.env.HEARTH_E2E_API_ONLY === '1';
const DOWNLOAD_TIMEOUT = 120_000;
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

const strace = straceOptions();

e2eTest('every connect() of hearth serve stays on loopback while the app is used', {
  timeout: 300_000,
  skip: strace.options ? false : `SKIPPED: ${strace.reason}`,
}, async (e2e) => {
  const hub = await startHub({ seconds: 2 });
  e2e.defer(() => hub.close());
  const traceFile = join(OUTPUT_DIR, 'logs', 'offline-strace.connect.txt');
  mkdirSync(join(OUTPUT_DIR, 'logs'), { recursive: true });
  const server = await e2e.server({
    name: 'offline-strace',
    wrap: straceWrap(traceFile, strace.options),
    env: { HF_ENDPOINT: hub.endpoint },
  });
  e2e.note(`hearth serve under strace ${strace.options.join(' ')} at ${server.url}; trace: ${traceFile}`);

  // The API, every read endpoint the UI uses (the probe, the planner's fit badges and the
  // recommendation among them).
  for (const path of ['/health', '/v1/models', '/api/models', '/api/system', '/api/settings', '/api/conversations', '/metrics']) {
    const { status, text } = await api(server, 'GET', path);
    assert.equal(status, 200, `GET ${path} answered ${status}: ${text.slice(0, 200)}`);
  }
  e2e.check('GET /health, /v1/models, /api/models, /api/system, /api/settings, /api/conversations, /metrics answered 200');
  const conversation = await createConversation(server, { title: 'offline audit', settings: { max_tokens: 24 } });
  const first = await sendMessage(server, conversation.id, 'Name three colours.');
  assert.ok(first.text.length > 0, 'the API chat produced no text');
  e2e.check(`API chat answered offline: ${JSON.stringify(first.text.slice(0, 60))}...`);
  const regenerated = await streamEvents(server, `/api/conversations/${conversation.id}/regenerate`, {});
  assert.ok(regenerated.events.some((event) => event.type === 'done'), 'regenerate did not finish');
  const exported = await api(server, 'GET', `/api/conversations/${conversation.id}/export?format=markdown`);
  assert.equal(exported.status, 200);
  e2e.check('regenerate and export work offline too');

  if (API_ONLY) {
    e2e.note('HEARTH_E2E_API_ONLY=1: the UI walk is skipped');
  } else {
    const page = await e2e.open(server);
    for (const nav of ['nav-models', 'nav-hardware', 'nav-settings', 'nav-chat']) {
      await byId(page, nav).click();
      await sleep(500);
      await e2e.screenshot(`offline ${nav}`);
    }
    await openConversation(page, 'offline audit');
    await send(page, 'Name three animals.');
    const answer = await waitForAnswerDone(page);
    assert.ok(answer.trim().length > 0, 'the UI chat produced no text');
    e2e.check(`UI chat answered: ${JSON.stringify(answer.slice(0, 60))}...`);
    await e2e.screenshot('offline chat');
  }

  assert.deepEqual(hub.requests, [], 'the server asked the hub for something before any download was started');
  e2e.check('the hub got no request before a download was started (no background model checks)');

  // Control: a download the user starts does connect, and the trace sees it.
  const started = await apiOk(server, 'POST', '/api/downloads', { model: SMOLLM2_CATALOG_ID }, 202);
  const deadline = Date.now() + DOWNLOAD_TIMEOUT;
  let state = started.state;
  while (!['installed', 'failed', 'cancelled'].includes(state) && Date.now() < deadline) {
    await sleep(250);
    state = (await apiOk(server, 'GET', `/api/downloads/${started.id}`)).state;
  }
  assert.equal(state, 'installed', `the control download ended ${state}`);
  await server.stop();

  const connects = parseConnects(readFileSync(traceFile, 'utf8'));
  e2e.note(`connect() calls seen: ${connects.length}\n${summarizeConnects(connects).map((l) => `        ${l}`).join('\n')}`);
  const hubPort = Number(new URL(hub.endpoint).port);
  assert.ok(
    connects.some((c) => c.family === 'AF_INET' && c.address === '127.0.0.1' && c.port === hubPort),
    'the trace shows no connection to the loopback hub: is strace following the server?',
  );
  e2e.check(`control: the download's connections to the loopback hub (port ${hubPort}) are in the trace`);
  const remote = connects.filter((c) => !c.local);
  assert.deepEqual(remote.map((c) => c.line), [], 'connect() calls that left loopback');
  e2e.check(`all ${connects.length} connect() calls went to 127.0.0.1, ::1, or a unix socket`);
});
