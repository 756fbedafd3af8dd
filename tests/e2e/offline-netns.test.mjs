// Offline means offline, with the network really gone: scripts/test-e2e runs this file inside
// `unshare -n` (a network namespace holding only the loopback interface, brought up with
// `ip link set lo up`). `hearth serve` starts, a model is installed (imported from disk), it
// loads on demand, and a chat works through the UI and the API; a download started anyway
// says why it cannot proceed. Outside such a namespace the tests are skipped (they would
// prove nothing there).
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { apiOk, createConversation, sendMessage } from './lib/api.mjs';
import { SMOLLM2_PATH } from './lib/env.mjs';
import { e2eTest } from './lib/e2e.mjs';
import { byId, openConversation, send, waitForAnswerDone } from './lib/ui.mjs';

const IN_NETNS = process.env.HEARTH_E2E_NETNS === '1';
const API_ONLY = process.env.HEARTH_E2E_API_ONLY === '1';

e2eTest('with networking removed (unshare -n), hearth serve and the UI still chat', {
  timeout: 180_000,
  skip: IN_NETNS ? false : 'runs inside `unshare -n` from scripts/test-e2e (HEARTH_E2E_NETNS=1)',
}, async (e2e) => {
  // /proc/net/dev belongs to the namespace (/sys/class/net would need sysfs remounted).
  const interfaces = readFileSync('/proc/net/dev', 'utf8')
    .split('\n')
    .slice(2)
    .map((line) => line.split(':')[0].trim())
    .filter(Boolean);
  assert.deepEqual(interfaces, ['lo'], `not an isolated network namespace: interfaces ${interfaces.join(', ')}`);
  e2e.check('the only network interface is lo');
  const outside = await fetch('http://1.1.1.1/', { signal: AbortSignal.timeout(5_000) }).then(
    () => 'reachable',
    (error) => error.cause?.code ?? error.name,
  );
  assert.notEqual(outside, 'reachable', 'an outside address answered inside the namespace');
  e2e.check(`an outside address is unreachable (${outside})`);

  // An installed model, as a user has after the first run: imported into the library (in place).
  const server = await e2e.server({ name: 'offline-netns', model: null });
  const installed = await apiOk(server, 'POST', '/api/models/import', { path: SMOLLM2_PATH, in_place: true });
  e2e.check(`the test model is installed as ${installed.id}`);
  const conversation = await createConversation(server, { title: 'offline chat', settings: { max_tokens: 24 } });
  await apiOk(server, 'PATCH', `/api/conversations/${conversation.id}`, { model: installed.id });
  const { text } = await sendMessage(server, conversation.id, 'Name three colours.');
  assert.ok(text.length > 0, 'no answer over the API');
  e2e.check(`the API answers offline: ${JSON.stringify(text.slice(0, 60))}`);
  if (API_ONLY) return e2e.note('HEARTH_E2E_API_ONLY=1: the UI part is skipped');

  const page = await e2e.open(server);
  await openConversation(page, 'offline chat');
  await send(page, 'Name three animals.');
  const answer = await waitForAnswerDone(page);
  assert.ok(answer.trim().length > 0, 'no answer in the UI');
  e2e.check(`the UI chats offline: ${JSON.stringify(answer.slice(0, 60))}`);
  await e2e.screenshot('offline chat in a network namespace');
});

e2eTest('with networking removed, a download started on the first-run screen says why it cannot proceed', {
  timeout: 120_000,
  skip: IN_NETNS ? false : 'runs inside `unshare -n` from scripts/test-e2e (HEARTH_E2E_NETNS=1)',
}, async (e2e) => {
  if (API_ONLY) return e2e.note('HEARTH_E2E_API_ONLY=1: skipped');
  // The real hub address (HF_ENDPOINT unset): unreachable here.
  const server = await e2e.server({ name: 'offline-download', model: null });
  const page = await e2e.open(server);
  await byId(page, 'first-run-download').click();
  e2e.check('the first-run download was started with no network');
  const deadline = Date.now() + 30_000;
  let status = null;
  while (Date.now() < deadline) {
    const listing = await apiOk(server, 'GET', '/api/downloads');
    const list = Array.isArray(listing) ? listing : listing.downloads ?? listing.data ?? [];
    status = list.find((d) => d.reason || d.error);
    if (status) break;
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
  assert.ok(status, 'the server never said why the download cannot proceed');
  const reason = status.reason ?? status.error?.message ?? String(status.error);
  e2e.note(`server: ${status.state}: ${reason}`);
  await byId(page, 'first-run').getByText(reason.slice(0, 40), { exact: false }).first().waitFor({ state: 'visible' });
  e2e.check(`the page shows the reason (${status.state}): ${reason.slice(0, 100)}`);
  await e2e.screenshot('offline download');
  await byId(page, 'download-cancel').first().click();
  e2e.check('the download can be cancelled');
});
