// A remote provider in the web UI: a second `hearth serve` (the real SmolLM2 model) plays the
// remote of a first one that has no model of its own. The provider is added in Settings; the
// chat's model menu marks the remote model; the first message asks before it leaves the
// machine, and only once agreed does the answer stream in, with its metrics measured by the
// first server and the provider's name saved with it.
import assert from 'node:assert/strict';
import { apiOk, GREEDY } from './lib/api.mjs';
import { e2eTest } from './lib/e2e.mjs';
import { UI_TIMEOUT } from './lib/env.mjs';
import { byId, lastAnswerOf, lastAssistant, openConversation, send, waitForAnswerDone, waitForPageToMatchServer } from './lib/ui.mjs';

e2eTest('a remote provider added in Settings answers a chat once the user agrees', {}, async (e2e) => {
  const remote = await e2e.server({ name: 'remote' });
  const front = await e2e.server({ name: 'front', model: null });
  const remoteModel = (await apiOk(remote, 'GET', '/v1/models')).data[0].id;
  const model = `lab/${remoteModel}`;

  const page = await e2e.open(front, '/settings');
  await byId(page, 'provider-name').fill('lab');
  await byId(page, 'provider-url').fill(`${remote.url}/v1`);
  await byId(page, 'provider-add').click();
  await page.getByTestId('provider-row').filter({ hasText: 'lab' }).waitFor({ timeout: UI_TIMEOUT });
  const row = await page.getByTestId('provider-row').textContent();
  assert.match(row, /1 model/, `the provider row does not show its model: ${row}`);
  e2e.check(`the provider was added in Settings and lists its model (${row.replace(/\s+/g, ' ').trim()})`);

  const conversation = await apiOk(front, 'POST', '/api/conversations', {
    title: 'Remote check',
    model,
    settings: { ...GREEDY, max_tokens: 24 },
  });
  await page.goto(`${front.url}/`);
  await openConversation(page, 'Remote check');
  // The menu's labels follow /v1/models, which the page asks for as it starts.
  const marked = `${model} (remote: lab)`;
  await page
    .waitForFunction(
      (text) => document.querySelector('[data-testid="model-select"] option:checked')?.textContent === text,
      marked,
      { timeout: UI_TIMEOUT },
    )
    .catch(() => {});
  const option = await byId(page, 'model-select').locator('option:checked').textContent();
  assert.equal(option, marked, 'the model menu does not mark the remote model');
  const welcome = await page.getByText('leaves this machine').first().textContent();
  e2e.note(`empty conversation says: ${welcome.trim()}`);
  e2e.check(`the model menu marks it: "${option}"`);

  await send(page, 'What is the capital of France?');
  const question = byId(page, 'remote-confirmation');
  await question.waitFor({ timeout: UI_TIMEOUT });
  const asked = await question.textContent();
  assert.match(asked, /leave this machine/, asked);
  assert.match(asked, /`lab`/, asked);
  let saved = await apiOk(front, 'GET', `/api/conversations/${conversation.id}`);
  assert.equal(saved.messages.length, 0, 'something was saved before the user agreed');
  e2e.check('the first message waits for the user: nothing is sent or saved yet');
  await e2e.screenshot('asked before sending to a remote');
  await byId(page, 'remote-confirm-send').click();
  await waitForAnswerDone(page);
  saved = await waitForPageToMatchServer(page, front, conversation.id, (c) => lastAnswerOf(c)?.status === 'complete');
  const answer = lastAnswerOf(saved);
  assert.equal(answer.metrics?.provider, 'lab', 'the answer does not name its provider');
  assert.ok(answer.content.length > 0, 'the remote answered nothing');
  const metrics = await lastAssistant(page).getByTestId('message-metrics').textContent();
  assert.match(metrics, /ttft/i, `no TTFT under the remote answer: ${metrics}`);
  e2e.check(`after "Send" the remote's answer streamed in (${answer.content.length} characters), with its metrics: ${metrics.trim()}`);
  await e2e.screenshot('remote answer');
});
