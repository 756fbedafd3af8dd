// Chatting in the web UI served by `hearth serve` with the real SmolLM2 model: an answer
// streams in and its metrics appear; Stop keeps the answer as stopped; Regenerate replaces the
// answer; editing a question answers it again; a reload finds the conversation; a history
// longer than the context is answered with a notice that old turns were left out. Every
// conversation is created through the API with greedy sampling, so answers are the same on
// every run, and the page is always compared with what the server saved.
import assert from 'node:assert/strict';
import { apiOk, createConversation, getConversation } from './lib/api.mjs';
import { e2eTest } from './lib/e2e.mjs';
import { UI_TIMEOUT } from './lib/env.mjs';
import {
  answerGrowth, byId, isNewAnswer, lastAnswerOf, lastAssistant, messagesOnPage, normalize, openConversation,
  recordAnswerGrowth, send, waitForAnswerDone, waitForAnswerLength, waitForPageToMatchServer,
} from './lib/ui.mjs';

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

e2eTest('a typed message streams its answer in and the metrics appear', {}, async (e2e) => {
  const server = await e2e.server();
  const conversation = await createConversation(server, { title: 'Streaming check', settings: { max_tokens: 48 } });
  const page = await e2e.open(server);
  await openConversation(page, 'Streaming check');
  await recordAnswerGrowth(page);
  await byId(page, 'composer').fill('Tell me about the sea.');
  await byId(page, 'composer').press('Enter');
  e2e.check('Enter in the composer sends the message');
  await waitForAnswerDone(page);
  const growth = await answerGrowth(page);
  const whileStreaming = growth.filter((o) => !o.metrics && o.length > 0);
  const lengths = [...new Set(whileStreaming.map((o) => o.length))];
  e2e.note(`answer lengths seen while it streamed: ${lengths.join(', ')}`);
  assert.ok(lengths.length >= 2, `the answer did not grow while streaming (seen: ${lengths.join(', ') || 'nothing'})`);
  for (let i = 1; i < whileStreaming.length; i += 1) {
    assert.ok(
      normalize(whileStreaming[i].text).startsWith(normalize(whileStreaming[i - 1].text).slice(0, -8)),
      `the streamed text changed instead of growing: ${JSON.stringify(whileStreaming[i - 1].text)} -> ${JSON.stringify(whileStreaming[i].text)}`,
    );
  }
  e2e.check(`tokens streamed in: the answer grew across ${lengths.length} observations before it was done`);

  const saved = await waitForPageToMatchServer(page, server, conversation.id, (c) => lastAnswerOf(c)?.status === 'complete');
  const answer = lastAnswerOf(saved);
  e2e.check('the page shows the answer the server saved');
  const metricsText = await lastAssistant(page).getByTestId('message-metrics').textContent();
  e2e.note(`metrics: ${metricsText}`);
  assert.match(metricsText, /ttft/i, 'the metrics show no TTFT');
  assert.match(metricsText, /tok(en)?s?\s*\/\s*s/i, 'the metrics show no tokens/s');
  const tokens = answer.metrics?.completion_tokens ?? answer.metrics?.generated_tokens;
  assert.ok(new RegExp(`\\b${tokens}\\b`).test(metricsText), `the metrics do not show the token count ${tokens}`);
  e2e.check(`the metrics appear with TTFT, tokens/s and the token count (${tokens})`);
  const meter = await byId(page, 'context-meter').textContent();
  assert.match(meter, /\d[\d,. ]*\s*\/\s*\d[\d,. ]*/, `the context meter shows no "used / n_ctx": ${meter}`);
  e2e.check(`the context meter shows ${meter.trim()}`);
  await e2e.screenshot('chat answered');
});

e2eTest('Stop ends the answer mid-way and it is kept as stopped', {}, async (e2e) => {
  const server = await e2e.server();
  // ignore_eos and a large max_tokens: the answer would run for minutes if nothing stopped it.
  const conversation = await createConversation(server, {
    title: 'Stop check',
    settings: { max_tokens: 4000, ignore_eos: true },
  });
  const page = await e2e.open(server);
  await openConversation(page, 'Stop check');
  await send(page, 'Write a long story about a lighthouse keeper.');
  await waitForAnswerLength(page, 60);
  await e2e.screenshot('streaming before stop');
  await byId(page, 'stop').click();
  e2e.check('Stop was pressed while the answer streamed');
  await byId(page, 'stop').waitFor({ state: 'hidden', timeout: UI_TIMEOUT });
  // Tokens already in flight may still land, or the page may show the saved copy: the text
  // settles within a second and then stays the same.
  const atStop = (await messagesOnPage(page)).at(-1).text;
  await sleep(1_000);
  const settled = (await messagesOnPage(page)).at(-1).text;
  await sleep(1_500);
  const later = (await messagesOnPage(page)).at(-1).text;
  assert.equal(later, settled, 'the answer kept growing after Stop');
  assert.ok(Math.abs(settled.length - atStop.length) <= 40, `the answer changed a lot after Stop: ${atStop.length} -> ${settled.length} characters`);
  e2e.check(`the answer stopped growing (${atStop.length} characters at Stop, ${settled.length} once settled)`);
  const saved = await waitForPageToMatchServer(page, server, conversation.id, (c) => lastAnswerOf(c)?.status !== 'streaming');
  const answer = lastAnswerOf(saved);
  assert.equal(answer.status, 'stopped', `the answer was saved as ${answer.status}`);
  assert.ok(answer.content.length > 0, 'the stopped answer was saved empty');
  e2e.check(`the server kept the answer as "stopped" with its ${answer.content.length} characters, and the page shows them`);
  await assert.doesNotReject(
    lastAssistant(page).getByText(/stopped/i).first().waitFor({ state: 'visible', timeout: UI_TIMEOUT }),
    'the answer is not marked as stopped on the page',
  );
  e2e.check('the page marks the answer as stopped');
  await page.reload();
  await openConversation(page, 'Stop check');
  await waitForPageToMatchServer(page, server, conversation.id);
  e2e.check('after a reload the stopped answer is still shown in full');
  await e2e.screenshot('stopped answer');

  // The keyboard way: Esc stops too.
  await send(page, 'Write another long story, about a baker.');
  await page.waitForFunction(() => document.querySelectorAll('[data-testid="message-assistant"]').length === 2);
  await waitForAnswerLength(page, 30);
  await page.keyboard.press('Escape');
  await byId(page, 'stop').waitFor({ state: 'hidden', timeout: UI_TIMEOUT });
  const afterEscape = await waitForPageToMatchServer(page, server, conversation.id, (c) => lastAnswerOf(c)?.status !== 'streaming');
  assert.equal(lastAnswerOf(afterEscape).status, 'stopped', 'Esc did not stop the answer');
  e2e.check('Esc stops an answer too; it is kept as stopped');
});

e2eTest('Regenerate replaces the last answer with a new one', {}, async (e2e) => {
  const server = await e2e.server();
  const conversation = await createConversation(server, { title: 'Regenerate check', settings: { max_tokens: 32 } });
  const page = await e2e.open(server);
  await openConversation(page, 'Regenerate check');
  await send(page, 'Tell me about the history of Rome.');
  const first = lastAnswerOf(
    await waitForPageToMatchServer(page, server, conversation.id, (c) => lastAnswerOf(c)?.status === 'complete'),
  );
  e2e.note(`first answer (32 tokens at most): ${JSON.stringify(first.content)}`);
  // A shorter limit makes the new answer visibly different even under greedy decoding.
  await apiOk(server, 'PATCH', `/api/conversations/${conversation.id}`, { settings: { temperature: 0, seed: 1, max_tokens: 8 } });
  const regenerateCall = page.waitForResponse((r) => r.url().endsWith(`/api/conversations/${conversation.id}/regenerate`));
  await lastAssistant(page).getByTestId('regenerate').click();
  const regenerateStatus = (await regenerateCall).status();
  assert.equal(regenerateStatus, 200, `POST /api/conversations/${conversation.id}/regenerate answered ${regenerateStatus}`);
  e2e.check('Regenerate was pressed on the last answer (POST .../regenerate answered 200)');
  const saved = await waitForPageToMatchServer(
    page, server, conversation.id,
    (c) => isNewAnswer(lastAnswerOf(c), first) && lastAnswerOf(c).status === 'complete',
  );
  const second = lastAnswerOf(saved);
  e2e.note(`regenerated answer (8 tokens at most): ${JSON.stringify(second.content)}`);
  assert.equal(saved.messages.filter((m) => m.role === 'assistant').length, 1, 'the old answer was kept beside the new one');
  assert.notEqual(second.content, first.content, 'the regenerated answer is the same text');
  e2e.check('the old answer is gone; the page shows only the regenerated one, with its metrics');
  if (normalize(first.content).startsWith(normalize(second.content))) {
    e2e.check('greedy decoding: the regenerated answer is the start of the first one');
  } else {
    e2e.note('(the regenerated answer is not a prefix of the first: numerics of a reused KV cache)');
  }
  await e2e.screenshot('regenerated');
});

e2eTest('editing a question and sending it again answers the new question', {}, async (e2e) => {
  const server = await e2e.server();
  const conversation = await createConversation(server, { title: 'Edit check', settings: { max_tokens: 24 } });
  const page = await e2e.open(server);
  await openConversation(page, 'Edit check');
  await send(page, 'Name a fruit.');
  const before = await waitForPageToMatchServer(page, server, conversation.id, (c) => lastAnswerOf(c)?.status === 'complete');
  const oldAnswer = lastAnswerOf(before);
  const question = byId(page, 'message-user').first();
  await question.getByTestId('edit').click();
  const editor = page.getByTestId('edit-input').or(question.locator('textarea')).first();
  await editor.fill('Name a vegetable.');
  const editCall = page.waitForResponse((r) => /\/messages\/\d+\/edit$/.test(r.url()));
  await page.getByTestId('edit-save').click();
  const editStatus = (await editCall).status();
  assert.equal(editStatus, 200, `POST .../messages/{id}/edit answered ${editStatus}`);
  e2e.check('the question was edited and sent again (POST .../messages/{id}/edit answered 200)');
  const after = await waitForPageToMatchServer(
    page, server, conversation.id,
    (c) => c.messages[0]?.content === 'Name a vegetable.' && isNewAnswer(lastAnswerOf(c), oldAnswer) && lastAnswerOf(c).status === 'complete',
  );
  assert.deepEqual(after.messages.map((m) => m.role), ['user', 'assistant'], 'later messages were not removed');
  e2e.note(`answer to the edited question: ${JSON.stringify(lastAnswerOf(after).content)}`);
  e2e.check('the server replaced the question, dropped the old answer and answered anew; the page shows the same');
  await e2e.screenshot('edited and resent');
});

e2eTest('after a reload the conversation is found in the list with its messages', {}, async (e2e) => {
  const server = await e2e.server();
  const conversation = await createConversation(server, { title: 'Reload check', settings: { max_tokens: 24 } });
  const page = await e2e.open(server);
  await openConversation(page, 'Reload check');
  await send(page, 'What is the capital of France?');
  await waitForPageToMatchServer(page, server, conversation.id, (c) => lastAnswerOf(c)?.status === 'complete');
  const shownBefore = (await messagesOnPage(page)).map(({ role, text }) => ({ role, text }));
  await page.reload();
  e2e.check('the page was reloaded');
  await byId(page, 'conversation-item').filter({ hasText: 'Reload check' }).first().waitFor({ state: 'visible' });
  e2e.check('the conversation is in the list after the reload');
  await openConversation(page, 'Reload check');
  await waitForPageToMatchServer(page, server, conversation.id);
  const shownAfter = (await messagesOnPage(page)).map(({ role, text }) => ({ role, text }));
  assert.deepEqual(shownAfter, shownBefore, 'the conversation looks different after the reload');
  e2e.check('it shows the same question and answer as before the reload');
  const search = byId(page, 'conversation-search');
  await search.fill('capital of France');
  await byId(page, 'conversation-item').filter({ hasText: 'Reload check' }).first().waitFor({ state: 'visible' });
  e2e.check('searching for words of the question finds it');
  await e2e.screenshot('after reload');
  assert.ok((await getConversation(server, conversation.id)).messages.length === 2);
});

e2eTest('a conversation longer than the context drops its oldest turns, and the page says so', {}, async (e2e) => {
  // A small context (--ctx 512) and an imported history of about 1,500 tokens.
  const server = await e2e.server({ args: ['--ctx', '512'] });
  const paragraph = 'The lighthouse keeper walked up the spiral stairs every evening to light the lamp. ';
  const messages = [];
  for (let turn = 0; turn < 8; turn += 1) {
    messages.push({ role: 'user', content: `Question ${turn + 1}: ${paragraph.repeat(4)}`, status: 'complete', metrics: null });
    messages.push({ role: 'assistant', content: `Answer ${turn + 1}: ${paragraph.repeat(4)}`, status: 'complete', metrics: null });
  }
  const imported = await apiOk(server, 'POST', '/api/conversations/import', {
    format: 'hearth-conversation', schema_version: 2, title: 'Long history', model: null, system_prompt: null,
    settings: { temperature: 0, seed: 1, max_tokens: 16 }, messages,
  });
  const id = imported.id ?? imported.conversation?.id;
  const page = await e2e.open(server);
  await openConversation(page, 'Long history');
  await send(page, 'What did the keeper do?');
  const saved = await waitForPageToMatchServer(page, server, id, (c) => c.messages.length === 18 && lastAnswerOf(c)?.status === 'complete');
  e2e.check(`the answer came (${JSON.stringify(lastAnswerOf(saved).content)}) although the history exceeds 512 tokens`);
  const notice = byId(page, 'dropped-notice');
  await notice.waitFor({ state: 'visible' });
  e2e.check(`the page says old turns were left out: ${(await notice.textContent()).trim().replace(/\s+/g, ' ')}`);
  assert.match(await byId(page, 'context-meter').textContent(), /\/\s*512\b/, 'the context meter does not show n_ctx 512');
  e2e.check('the context meter counts against 512 tokens');
  await e2e.screenshot('dropped turns');
});
