// Debian's Chromium driven by playwright-core (no browser download), with an audit of every
// request a page makes: anything that is not the loopback server is blocked and recorded, as
// are dialogs (alert() from an injected script), page errors and CSP violations.
import { chromium } from 'playwright-core';
import { CHROMIUM, CHROMIUM_ARGS, UI_TIMEOUT, requireFile } from './env.mjs';

const LAUNCH_TIMEOUT = 60_000;

export async function launchBrowser() {
  requireFile(CHROMIUM, 'install Debian\'s chromium package (apt-get install chromium)');
  return chromium.launch({
    executablePath: CHROMIUM,
    args: CHROMIUM_ARGS,
    headless: true,
    timeout: LAUNCH_TIMEOUT,
  });
}

/** True for addresses on this machine's loopback interface, and for in-page schemes. */
export function isLocal(url) {
  if (/^(data|blob|about):/.test(url)) return true;
  try {
    const { protocol, hostname } = new URL(url);
    if (!['http:', 'https:', 'ws:', 'wss:'].includes(protocol)) return false;
    return hostname === '127.0.0.1' || hostname === '[::1]' || hostname === 'localhost';
  } catch {
    return false;
  }
}

/** A fresh browser context and page with the audit attached. */
export async function openAuditedPage(browser, { viewport = { width: 1280, height: 860 } } = {}) {
  const context = await browser.newContext({ viewport, acceptDownloads: true });
  // Copy buttons write to the clipboard; tests read it back.
  await context.grantPermissions(['clipboard-read', 'clipboard-write']);
  context.setDefaultTimeout(UI_TIMEOUT);
  context.setDefaultNavigationTimeout(UI_TIMEOUT);
  const audit = {
    requests: [],
    offLoopback: [],
    dialogs: [],
    pageErrors: [],
    console: [],
    cspViolations: [],
  };
  // Nothing leaves the machine even if the UI tried: such requests are aborted and recorded.
  await context.route('**/*', (route) => {
    const url = route.request().url();
    if (isLocal(url)) return route.continue();
    audit.offLoopback.push(url);
    return route.abort('blockedbyclient');
  });
  context.on('request', (request) => {
    audit.requests.push(request.url());
    if (!isLocal(request.url()) && !audit.offLoopback.includes(request.url())) {
      audit.offLoopback.push(request.url());
    }
  });
  const page = await context.newPage();
  page.on('websocket', (socket) => {
    if (!isLocal(socket.url())) audit.offLoopback.push(socket.url());
  });
  page.on('dialog', (dialog) => {
    audit.dialogs.push(`${dialog.type()}: ${dialog.message()}`);
    dialog.dismiss().catch(() => {});
  });
  page.on('pageerror', (error) => audit.pageErrors.push(String(error)));
  page.on('console', (message) => {
    const text = `${message.type()}: ${message.text()}`;
    audit.console.push(text);
    if (/Content Security Policy/i.test(message.text())) audit.cspViolations.push(message.text());
  });
  return { context, page, audit };
}
