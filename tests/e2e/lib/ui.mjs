// Steps in Hearth's web UI, by the data-testids of docs/ui-contract.md.
import assert from 'node:assert/strict';
import { getConversation } from './api.mjs';
import { ANSWER_TIMEOUT, UI_TIMEOUT } from './env.mjs';

export const byId = (page, id) => page.getByTestId(id);

/** Opens the conversation titled `title` from the list (it was created through the API). */
export async function openConversation(page, title) {
  const item = byId(page, 'conversation-item').filter({ hasText: title });
  await item.first().waitFor({ state: 'visible', timeout: UI_TIMEOUT });
  await item.first().click();
  await byId(page, 'composer').waitFor({ state: 'visible', timeout: UI_TIMEOUT });
}

export function lastAssistant(page) {
  return byId(page, 'message-assistant').last();
}

export function lastAssistantText(page) {
  return lastAssistant(page).getByTestId('message-content');
}

/**
 * Starts recording, inside the page, every change of the last answer's text (its length and
 * whether its metrics are shown yet), so growth between two paints is seen even when it is fast.
 */
export async function recordAnswerGrowth(page) {
  await page.evaluate(() => {
    const observations = [];
    window.__hearthE2eGrowth = observations;
    const look = () => {
      const answers = document.querySelectorAll('[data-testid="message-assistant"]');
      const answer = answers[answers.length - 1];
      if (!answer) return;
      const content = answer.querySelector('[data-testid="message-content"]');
      const text = content ? content.textContent : '';
      const metrics = answer.querySelector('[data-testid="message-metrics"]') !== null;
      const previous = observations[observations.length - 1];
      if (!previous || previous.length !== text.length || previous.metrics !== metrics) {
        observations.push({ at: performance.now(), answers: answers.length, length: text.length, metrics, text });
      }
    };
    const observer = new MutationObserver(look);
    observer.observe(document.body, { subtree: true, childList: true, characterData: true, attributes: true });
    window.__hearthE2eStopGrowth = () => observer.disconnect();
  });
}

export async function answerGrowth(page) {
  return page.evaluate(() => {
    window.__hearthE2eStopGrowth?.();
    return window.__hearthE2eGrowth ?? [];
  });
}

/** Types `text` in the composer and sends it with the Send button. */
export async function send(page, text) {
  const composer = byId(page, 'composer');
  await composer.fill(text);
  await byId(page, 'send').click();
}

/** Waits until the last answer shows its metrics (the answer is done), and returns its text. */
export async function waitForAnswerDone(page, timeout = ANSWER_TIMEOUT) {
  const metrics = lastAssistant(page).getByTestId('message-metrics');
  await metrics.waitFor({ state: 'visible', timeout });
  return (await lastAssistantText(page).textContent()) ?? '';
}

/** Waits until `count` answers are on the page. */
export async function waitForAnswers(page, count, timeout = UI_TIMEOUT) {
  await page.waitForFunction(
    (n) => document.querySelectorAll('[data-testid="message-assistant"]').length === n,
    count,
    { timeout },
  );
}

/** Waits until the last answer's text holds at least `length` characters. */
export async function waitForAnswerLength(page, length, timeout = ANSWER_TIMEOUT) {
  await page.waitForFunction(
    (n) => {
      const answers = document.querySelectorAll('[data-testid="message-assistant"]');
      const content = answers[answers.length - 1]?.querySelector('[data-testid="message-content"]');
      return (content?.textContent ?? '').length >= n;
    },
    length,
    { timeout, polling: 50 },
  );
}

/**
 * The text of every message on the page, in order: [{ role, text, metrics, busy }]. Buttons
 * inside a message (a code block's Copy) are left out of its text.
 */
export async function messagesOnPage(page) {
  return page.evaluate(() =>
    Array.from(document.querySelectorAll('[data-testid="message-user"], [data-testid="message-assistant"]')).map(
      (element) => {
        const content = element.querySelector('[data-testid="message-content"]');
        let text = '';
        if (content) {
          const copy = content.cloneNode(true);
          copy.querySelectorAll('button').forEach((button) => button.remove());
          text = copy.textContent ?? '';
        }
        return {
          role: element.getAttribute('data-testid') === 'message-user' ? 'user' : 'assistant',
          text,
          metrics: element.querySelector('[data-testid="message-metrics"]')?.textContent ?? null,
          busy: element.getAttribute('aria-busy') === 'true',
          whole: element.textContent ?? '',
        };
      },
    ),
  );
}

/**
 * Markdown source and its rendering compared by their letters and digits only: list numbers,
 * fence lines and markup characters are dropped from the source, whitespace and punctuation
 * from both (a renderer may show `1.` as a list marker that is not in textContent).
 */
export function normalize(text, { markdown = false } = {}) {
  let source = text;
  if (markdown) {
    source = source
      .replace(/^\s*```.*$/gm, '')
      .replace(/^\s*(\d+[.)]|[-*+])\s+/gm, '')
      .replace(/\[([^\]]*)\]\([^)]*\)/g, '$1');
  }
  return source.replace(/[^\p{L}\p{N}]+/gu, '').toLowerCase();
}

export function renderedMatches(rendered, source) {
  return normalize(rendered) === normalize(source, { markdown: true });
}

/**
 * Waits until the server's copy of conversation `id` satisfies `ready(conversation)` and the
 * page shows exactly its messages (same roles, same text), the last answer with its metrics
 * when it is complete. Returns the conversation. Throws with both sides when it never does.
 */
export async function waitForPageToMatchServer(page, server, id, ready = () => true, timeout = ANSWER_TIMEOUT) {
  const deadline = Date.now() + timeout;
  let conversation = null;
  let shown = [];
  while (Date.now() < deadline) {
    conversation = await getConversation(server, id);
    if (ready(conversation)) {
      shown = await messagesOnPage(page);
      const saved = conversation.messages.filter((m) => m.role !== 'system');
      const last = saved[saved.length - 1];
      const same =
        shown.length === saved.length &&
        saved.every((m, i) => shown[i].role === m.role && renderedMatches(shown[i].text, m.content)) &&
        (last?.role !== 'assistant' || last.status !== 'complete' || shown[shown.length - 1].metrics !== null);
      if (same) return conversation;
    }
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
  shown = await messagesOnPage(page).catch(() => shown);
  const why = conversation && !ready(conversation) ? ' (the server never reached the expected state)' : '';
  throw new Error(
    `the page never showed the server's conversation ${id}${why}:\n` +
      `server: ${JSON.stringify(conversation?.messages?.map((m) => ({ id: m.id, role: m.role, status: m.status, created_at: m.created_at, content: m.content })), null, 1)}\n` +
      `page: ${JSON.stringify(shown.map(({ role, text, metrics }) => ({ role, text, metrics })), null, 1)}`,
  );
}

/** True when `answer` is not the saved message `old` (a new row, or the row written anew). */
export function isNewAnswer(answer, old) {
  return Boolean(answer) && (answer.id !== old.id || answer.created_at !== old.created_at);
}

export function lastAnswerOf(conversation) {
  return conversation.messages.filter((m) => m.role === 'assistant').at(-1);
}
