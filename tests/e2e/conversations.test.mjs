// Managing conversations in the UI, each step checked against the server: rename, the system
// prompt, export as
// Markdown and as JSON (real downloads), delete with undo, and a new conversation started from
// the UI itself.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { api, apiOk, createConversation, getConversation, sendMessage } from './lib/api.mjs';
import { e2eTest } from './lib/e2e.mjs';
import { UI_TIMEOUT } from './lib/env.mjs';
import { byId, openConversation } from './lib/ui.mjs';

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

async function waitForServer(check, what, timeout = 10_000) {
  const deadline = Date.now() + timeout;
  let last;
  while (Date.now() < deadline) {
    last = await check();
    if (last) return last;
    await sleep(200);
  }
  throw new Error(`the server never showed ${what}`);
}

e2eTest('rename, system prompt, export as Markdown and JSON, delete with undo, start a new conversation', {}, async (e2e) => {
  const server = await e2e.server();
  const conversation = await createConversation(server, { title: 'Before rename', settings: { max_tokens: 12 } });
  await sendMessage(server, conversation.id, 'Name a colour.');
  const page = await e2e.open(server);
  await openConversation(page, 'Before rename');

  await byId(page, 'conversation-rename').click();
  const titleInput = byId(page, 'conversation-title-input');
  await titleInput.fill('Renamed in the UI');
  await titleInput.press('Enter');
  await waitForServer(async () => (await getConversation(server, conversation.id)).title === 'Renamed in the UI', 'the new title');
  await byId(page, 'conversation-item').filter({ hasText: 'Renamed in the UI' }).first().waitFor({ state: 'visible' });
  e2e.check('rename: the server and the list have the new title');

  const systemPrompt = byId(page, 'system-prompt');
  await systemPrompt.fill('You are a terse assistant.');
  await systemPrompt.blur();
  await waitForServer(
    async () => (await getConversation(server, conversation.id)).system_prompt === 'You are a terse assistant.',
    'the new system prompt',
  );
  e2e.check('system prompt: edited in the panel and saved by the server');

  for (const [testid, check] of [
    ['export-markdown', (text) => text.includes('# Renamed in the UI') && text.includes('Name a colour.')],
    ['export-json', (text) => {
      const json = JSON.parse(text);
      return json.format === 'hearth-conversation' && json.messages.length === 2 && json.title === 'Renamed in the UI';
    }],
  ]) {
    const download = page.waitForEvent('download', { timeout: UI_TIMEOUT });
    await byId(page, testid).click();
    const file = await (await download).path();
    const text = readFileSync(file, 'utf8');
    assert.ok(check(text), `${testid} gave an unexpected file:\n${text.slice(0, 500)}`);
    e2e.check(`${testid}: a download of ${text.length} bytes holding the conversation (${(await download).suggestedFilename()})`);
  }

  await byId(page, 'conversation-delete').click();
  await byId(page, 'conversation-item').filter({ hasText: 'Renamed in the UI' }).first().waitFor({ state: 'hidden' });
  const deleted = await api(server, 'GET', '/api/conversations');
  assert.ok(!deleted.json.data.some((c) => c.id === conversation.id), 'the server still lists the deleted conversation');
  e2e.check('delete: gone from the list and from the server\'s list');
  await byId(page, 'undo-delete').click();
  await byId(page, 'conversation-item').filter({ hasText: 'Renamed in the UI' }).first().waitFor({ state: 'visible' });
  const restored = await getConversation(server, conversation.id);
  assert.equal(restored.deleted_at, null, 'undo did not restore the conversation on the server');
  assert.equal(restored.messages.length, 2, 'the restored conversation lost messages');
  e2e.check('undo: back in the list with its messages');
  await e2e.screenshot('after undo');

  await byId(page, 'new-conversation').click();
  await byId(page, 'composer').fill('Hello from a new conversation.');
  await byId(page, 'send').click();
  const created = await waitForServer(async () => {
    const listing = await apiOk(server, 'GET', '/api/conversations');
    return listing.data.find((c) => c.id !== conversation.id);
  }, 'a new conversation', 30_000);
  e2e.check(`new conversation: created on the server by the first message (id ${created.id})`);
  await byId(page, 'message-user').filter({ hasText: 'Hello from a new conversation.' }).first().waitFor({ state: 'visible' });
  // This conversation has the server's default sampling: its answer is not waited for.
  await byId(page, 'stop').click({ timeout: 5_000 }).catch(() => {});
  await e2e.screenshot('new conversation');
});
