// A server that requires an API key (HEARTH_API_KEY), its page opened without the token URL:
// the page itself loads (static files hold no secret) and asks for the token, the API refuses
// the browser until the user types the key in Settings,
// then the browser sends it as a bearer token on every API call, keeps it for the session only
// (sessionStorage, never localStorage), and chat works.
import assert from 'node:assert/strict';
import { api, createConversation } from './lib/api.mjs';
import { e2eTest } from './lib/e2e.mjs';
import { byId, lastAnswerOf, openConversation, send, waitForPageToMatchServer } from './lib/ui.mjs';

const KEY = 'e2e-key-5c1d7d8f0b6a4e2f';

e2eTest('with an API key set, the browser chats once the key is typed in Settings', {}, async (e2e) => {
  const server = await e2e.server({ env: { HEARTH_API_KEY: KEY } });
  const refused = await fetch(`${server.url}/api/conversations`);
  assert.equal(refused.status, 401, `the API answered ${refused.status} without the key`);
  e2e.check('the API refuses a call without the key (401)');
  const conversation = await createConversation(server, { title: 'Keyed chat', settings: { max_tokens: 16 } });

  const page = await e2e.open(server, '/', { token: false });
  e2e.check('the page loads without a key');
  await page.waitForTimeout(1_000);
  assert.equal(await byId(page, 'conversation-item').count(), 0, 'conversations are listed without the key');
  e2e.check('without the key no conversation is shown');
  await byId(page, 'token-prompt').waitFor({ timeout: 10_000 });
  e2e.check('a page opened without a token asks for it');
  await e2e.screenshot('no key yet');

  await byId(page, 'nav-settings').click();
  const field = byId(page, 'access-key');
  await field.fill(KEY);
  await field.press('Enter');
  e2e.check('the key was typed in Settings');
  await byId(page, 'nav-chat').click();
  await openConversation(page, 'Keyed chat');
  const sentWithKey = page.waitForRequest((request) => request.url().endsWith(`/api/conversations/${conversation.id}/messages`));
  await send(page, 'Say hello.');
  const request = await sentWithKey;
  assert.equal((await request.allHeaders()).authorization, `Bearer ${KEY}`, 'the message was sent without the bearer key');
  const saved = await waitForPageToMatchServer(page, server, conversation.id, (c) => lastAnswerOf(c)?.status === 'complete');
  e2e.check(`the browser sends Authorization: Bearer <key> and the chat works: ${JSON.stringify(lastAnswerOf(saved).content)}`);

  const storage = await page.evaluate(() => ({ local: JSON.stringify(localStorage), session: JSON.stringify(sessionStorage) }));
  assert.ok(!storage.local.includes(KEY), 'the key was written to localStorage');
  assert.ok(storage.session.includes(KEY), 'the key is not in sessionStorage');
  e2e.check('the key is kept in sessionStorage only, not localStorage');
  const inUrls = e2e.audit.requests.filter((url) => url.includes(KEY));
  assert.deepEqual(inUrls, [], 'the key appeared in a URL');
  e2e.check('the key never appears in a URL');
  await page.reload();
  await openConversation(page, 'Keyed chat');
  e2e.check('after a reload (same session) the conversation still opens');
  const listing = await api(server, 'GET', '/api/conversations');
  assert.equal(listing.status, 200);
  await e2e.screenshot('keyed chat');
});
