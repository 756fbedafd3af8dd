// History survives a crash: while an answer streams in the UI, `hearth serve` is killed with
// SIGKILL (no chance to save anything more). It is started again on the same HEARTH_HOME (and
// port); after a reload the conversation is there, its answer marked stopped and holding the
// text the page showed up to about one second before the kill (the server saves a streaming
// answer at least every second).
import assert from 'node:assert/strict';
import { createConversation, getConversation } from './lib/api.mjs';
import { e2eTest } from './lib/e2e.mjs';
import {
  answerGrowth, lastAnswerOf, normalize, openConversation, recordAnswerGrowth, send, waitForAnswerLength,
  waitForPageToMatchServer,
} from './lib/ui.mjs';

/** The promise: at most the last second of an answer is lost. Plus paint and timer slack. */
const SAVE_INTERVAL_MS = 1_000;
const SLACK_MS = 500;
/** Let the answer stream this long first, so more than one save has happened. */
const STREAM_BEFORE_KILL_MS = 3_000;
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

e2eTest('SIGKILL while an answer streams: after a restart the answer is there up to about the last second', {}, async (e2e) => {
  const home = e2e.home('crash');
  const first = await e2e.server({ home, name: 'crash-before' });
  const conversation = await createConversation(first, {
    title: 'Crash check',
    settings: { max_tokens: 4000, ignore_eos: true },
  });
  const page = await e2e.open(first);
  await openConversation(page, 'Crash check');
  await recordAnswerGrowth(page);
  await send(page, 'Write a long story about a ship in a storm.');
  await waitForAnswerLength(page, 20);
  await sleep(STREAM_BEFORE_KILL_MS);
  const killedAt = await page.evaluate(() => performance.now());
  await first.crash();
  e2e.check(`hearth serve (pid ${first.pid}, ${first.url}) was killed with SIGKILL while the answer streamed`);
  const growth = await answerGrowth(page);
  const beforeKill = growth.filter((o) => o.at <= killedAt && o.length > 0);
  assert.ok(beforeKill.length >= 2, 'the answer was not streaming when the server was killed');
  const lastShown = beforeKill.at(-1);
  const guaranteed = beforeKill.filter((o) => o.at <= killedAt - SAVE_INTERVAL_MS - SLACK_MS).at(-1) ?? { text: '', length: 0 };
  e2e.note(`the page showed ${lastShown.length} characters at the kill, ${guaranteed.length} of them ${SAVE_INTERVAL_MS + SLACK_MS} ms earlier`);
  await e2e.screenshot('the moment of the crash');
  await first.stop(); // the engine worker it left behind, if any

  let second;
  try {
    second = await e2e.server({ home, name: 'crash-after', port: first.port });
  } catch (error) {
    e2e.note(`(port ${first.port} not free again: ${error.message.split('\n')[0]}; using a new port)`);
    second = await e2e.server({ home, name: 'crash-after' });
  }
  e2e.check(`hearth serve started again on the same HEARTH_HOME (${second.url})`);
  if (second.port === first.port) {
    await page.reload();
  } else {
    // Another origin: the tab's token is not there, but the same HEARTH_HOME kept the token.
    assert.equal(second.token, first.token, 'a restart on the same data folder picked a new token');
    await page.goto(`${second.url}/?token=${second.token}`);
  }
  await openConversation(page, 'Crash check');
  e2e.check('after a reload the conversation is in the list');
  const saved = await waitForPageToMatchServer(page, second, conversation.id);
  const answer = lastAnswerOf(saved);
  assert.ok(answer, 'the answer is gone');
  e2e.note(`saved answer: ${answer.content.length} characters, status ${answer.status}`);
  assert.equal(answer.status, 'stopped', `the interrupted answer is ${answer.status}, not stopped`);
  e2e.check('the interrupted answer is marked stopped');
  const savedText = normalize(answer.content, { markdown: true });
  const shownText = normalize(lastShown.text);
  assert.ok(
    shownText.startsWith(savedText) || savedText.startsWith(shownText),
    `the saved answer is not the text that streamed:\nsaved: ${answer.content}\nshown: ${lastShown.text}`,
  );
  assert.ok(
    savedText.length >= normalize(guaranteed.text).length,
    `more than the last second was lost: saved ${answer.content.length} characters, but the page showed ` +
      `${guaranteed.length} already ${SAVE_INTERVAL_MS + SLACK_MS} ms before the kill`,
  );
  e2e.check('the saved answer holds everything the page showed up to about one second before the kill');
  assert.equal((await getConversation(second, conversation.id)).messages[0].content, 'Write a long story about a ship in a storm.');
  await e2e.screenshot('after restart');
});
