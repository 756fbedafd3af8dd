// Model output is text, never code: an answer holding `<img src=x onerror=...>` and a `<script>`
// tag is shown as those characters and runs nothing, and no answer makes the page load
// anything from outside 127.0.0.1. Three sources of such answers:
//  1. the real model, asked (greedy decoding) to repeat the payload, watched while it streams;
//  2. a conversation restored through POST /api/conversations/import, so the payload is exact
//     whatever the model does, with more ways markdown can smuggle code or remote resources;
//  3. the same imported payload as a question, rendered as the user's message.
// A script that ran would open an alert (every dialog fails the test) or set a flag; an <img>
// that became an element would request /x. Every browser request is audited (page.on('request')).
import assert from 'node:assert/strict';
import { api, apiOk, createConversation } from './lib/api.mjs';
import { e2eTest } from './lib/e2e.mjs';
import { UI_TIMEOUT } from './lib/env.mjs';
import {
  lastAnswerOf, lastAssistant, messagesOnPage, openConversation, recordAnswerGrowth, answerGrowth, send,
  waitForAnswerDone,
} from './lib/ui.mjs';

const IMG = '<img src=x onerror=alert(1)>';
const SCRIPT = '<script>alert(2)</script>';
/** Greedy SmolLM2 repeats this prompt (with this system prompt) back, payload and all. */
const ECHO_SYSTEM = "You repeat the user's message exactly, character for character.";
const ECHO_PROMPT = `Say: ${IMG}${SCRIPT}`;

/** More hostile markdown: raw HTML of several kinds, javascript: links, remote images. */
const HOSTILE_ANSWER = [
  `Here is the payload: ${IMG} and ${SCRIPT} in one line.`,
  '',
  '<img src="x" onerror="window.__hearthPwned = \'img\'">',
  '',
  '<svg onload="window.__hearthPwned = \'svg\'"><circle r="4"/></svg>',
  '',
  '<iframe src="javascript:window.top.__hearthPwned = \'iframe\'"></iframe>',
  '',
  '[a link](javascript:window.__hearthPwned=\'link\') and <a href="javascript:alert(3)">another</a>',
  '',
  '![remote image](http://192.0.2.1/tracker.png) <img src="https://example.com/pixel.gif">',
  '',
  '<style>body { background: url(http://192.0.2.1/bg.png) }</style>',
  '',
  '```html',
  `${IMG}${SCRIPT}`,
  '```',
].join('\n');

/** Fails if anything executable or remote made it into the rendered messages. */
async function assertInert(e2e, page) {
  const found = await page.evaluate(() => {
    const contents = Array.from(document.querySelectorAll('[data-testid="message-content"]'));
    const problems = [];
    for (const content of contents) {
      for (const element of content.querySelectorAll('*')) {
        const tag = element.tagName.toLowerCase();
        if (['script', 'iframe', 'object', 'embed', 'style', 'link', 'meta', 'base', 'form'].includes(tag)) {
          problems.push(`<${tag}> element`);
        }
        for (const attribute of element.attributes) {
          if (/^on/i.test(attribute.name)) problems.push(`${attribute.name}= on <${tag}>`);
          if (/^\s*(javascript|vbscript|data:text\/html)/i.test(attribute.value)) {
            problems.push(`${attribute.name}="${attribute.value}" on <${tag}>`);
          }
        }
        if (tag === 'img' && element.getAttribute('src') === 'x') problems.push('<img src=x> element');
      }
    }
    return { problems, pwned: window.__hearthPwned ?? null };
  });
  assert.deepEqual(found.problems, [], 'executable markup reached the DOM');
  assert.equal(found.pwned, null, `an injected script ran (${found.pwned})`);
  assert.deepEqual(e2e.audit.dialogs, [], `alert() ran: ${e2e.audit.dialogs.join('; ')}`);
  const toX = e2e.audit.requests.filter((url) => /\/x$/.test(new URL(url, 'http://h').pathname));
  assert.deepEqual(toX, [], 'the page requested the injected <img src=x>');
  assert.deepEqual(e2e.audit.offLoopback, [], `requests left 127.0.0.1: ${e2e.audit.offLoopback.join(', ')}`);
}

async function clickEveryLink(page) {
  const links = page.locator('[data-testid="message-content"] a');
  const count = await links.count();
  for (let i = 0; i < count; i += 1) {
    await links.nth(i).click({ timeout: 5_000, modifiers: [] }).catch(() => {});
  }
  return count;
}

e2eTest('an answer from the real model holding <img onerror> and <script> renders as text and runs nothing', {}, async (e2e) => {
  const server = await e2e.server();
  const conversation = await createConversation(server, {
    title: 'XSS from the model',
    system_prompt: ECHO_SYSTEM,
    settings: { max_tokens: 48 },
  });
  const page = await e2e.open(server);
  await openConversation(page, 'XSS from the model');
  await recordAnswerGrowth(page);
  await send(page, ECHO_PROMPT);
  await waitForAnswerDone(page);
  const growth = await answerGrowth(page);
  e2e.check(`the answer streamed through the renderer in ${growth.length} steps`);
  const answer = lastAnswerOf((await apiOk(server, 'GET', `/api/conversations/${conversation.id}`)));
  e2e.note(`the model answered: ${JSON.stringify(answer.content)}`);
  await assertInert(e2e, page);
  e2e.check('while it streamed and once done, nothing in it ran, became an element, or loaded anything');
  const shown = (await messagesOnPage(page)).at(-1).text;
  const echoed = [IMG, SCRIPT].filter((payload) => answer.content.includes(payload));
  if (echoed.length === 0) {
    e2e.note('the model did not repeat the payload this time; the imported conversation covers the exact text');
  }
  for (const payload of echoed) {
    assert.ok(shown.includes(payload), `the page does not show ${payload} as text:\n${shown}`);
    e2e.check(`the model's ${payload} is shown as text`);
  }
  // The question holds the payload too: the user's own message must be inert as well.
  const question = (await messagesOnPage(page)).find((m) => m.role === 'user').text;
  assert.ok(question.includes(IMG) && question.includes(SCRIPT), `the question is not shown as text: ${question}`);
  e2e.check('the question with the payload is shown as text');
  await e2e.screenshot('model answer with html');
});

e2eTest('an imported answer full of hostile markup renders as text and loads nothing remote', {}, async (e2e) => {
  const server = await e2e.server();
  const imported = await api(server, 'POST', '/api/conversations/import', {
    format: 'hearth-conversation',
    schema_version: 2,
    title: 'XSS imported',
    model: null,
    system_prompt: null,
    settings: {},
    messages: [
      { role: 'user', content: `Please repeat: ${IMG}${SCRIPT}`, status: 'complete', metrics: null },
      { role: 'assistant', content: HOSTILE_ANSWER, status: 'complete', metrics: null },
    ],
  });
  assert.ok([200, 201].includes(imported.status), `POST /api/conversations/import answered ${imported.status}: ${imported.text}`);
  e2e.check('a conversation with the hostile answer was imported');
  const page = await e2e.open(server);
  await openConversation(page, 'XSS imported');
  await lastAssistant(page).getByTestId('message-content').waitFor({ state: 'visible', timeout: UI_TIMEOUT });
  await page.waitForTimeout(1_000); // time for an onerror, an onload or a remote fetch to happen
  const shown = (await messagesOnPage(page)).at(-1).text;
  assert.ok(shown.includes(IMG), `the page does not show ${IMG} as text:\n${shown}`);
  assert.ok(shown.includes(SCRIPT), `the page does not show ${SCRIPT} as text:\n${shown}`);
  e2e.check(`${IMG} and ${SCRIPT} are shown as text`);
  const copyButton = lastAssistant(page).getByTestId('copy-code');
  assert.equal(await copyButton.count(), 1, 'the code block has no copy button');
  await copyButton.click();
  const copied = await page.evaluate(() => navigator.clipboard.readText());
  assert.equal(copied.trim(), `${IMG}${SCRIPT}`, 'the copy button copied something else');
  const highlighted = await lastAssistant(page).locator('pre code [class*="hljs-"]').count();
  assert.ok(highlighted > 0, 'the html code block is not highlighted');
  e2e.check(`the code block is highlighted (${highlighted} tokens) and its Copy button copies the code exactly`);
  const links = await clickEveryLink(page);
  e2e.note(`clicked ${links} link(s) in the answer`);
  await page.waitForTimeout(500);
  await assertInert(e2e, page);
  e2e.check('no script ran (no alert, no flag), no <img src=x>/<svg onload>/<iframe>/javascript: link reached the DOM');
  e2e.check('no request left 127.0.0.1 (remote images and CSS backgrounds were not loaded)');
  const remoteImages = await page.evaluate(() =>
    Array.from(document.querySelectorAll('[data-testid="message-content"] img'))
      .map((img) => img.getAttribute('src'))
      .filter((src) => src && /^(https?:)?\/\//i.test(src) && !src.startsWith(location.origin)),
  );
  if (remoteImages.length) e2e.note(`(remote <img> kept in the DOM, blocked by the CSP: ${remoteImages.join(', ')})`);
  if (e2e.audit.cspViolations.length) e2e.note(`(CSP reports: ${e2e.audit.cspViolations.length})`);
  await e2e.screenshot('imported hostile answer');
});
