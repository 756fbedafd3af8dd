// Steps in Hearth's web UI, by the data-testids of docs/ui-contract.md.
import assert from 'node:assert/strict';
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

/** The text of every message on the page, in order: [{ role, text }]. */
export async function messagesOnPage(page) {
  return page.evaluate(() =>
    Array.from(document.querySelectorAll('[data-testid="message-user"], [data-testid="message-assistant"]')).map(
      (element) => {
        const content = element.querySelector('[data-testid="message-content"]') ?? element;
        return {
          role: element.getAttribute('data-testid') === 'message-user' ? 'user' : 'assistant',
          text: content.textContent ?? '',
        };
      },
    ),
  );
}

/** Whitespace-insensitive comparison of rendered markdown with its source text. */
export function squash(text) {
  return text.replace(/[\s`*_#>]+/g, '');
}

export function assertRenderedLike(rendered, source, what) {
  assert.equal(squash(rendered), squash(source), `${what}: the page shows\n${rendered}\nbut the server saved\n${source}`);
}
