// The frame every end-to-end test runs in: a bounded test with its servers, browser pages and
// hub cleaned up whatever happens; each check printed as it is made; on failure, a screenshot
// of every open page and the end of every server log, with the paths of the full files.
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { OUTPUT_DIR, TEST_TIMEOUT } from './env.mjs';
import { launchBrowser, openAuditedPage } from './browser.mjs';
import { makeHome, removeHome, startServer } from './server.mjs';

const LOG_TAIL_LINES = 60;
/** Extra time the runner's own timeout leaves for cleanup after ours fires. */
const CLEANUP_MARGIN = 30_000;

export function slug(text) {
  return text.toLowerCase().replace(/[^a-z0-9]+/g, '-').replace(/^-|-$/g, '').slice(0, 60);
}

let testStarted = Date.now();

/** Prints a line of the test's story, with the seconds since the test started. */
export function log(line) {
  const seconds = ((Date.now() - testStarted) / 1000).toFixed(1).padStart(5);
  process.stdout.write(`[e2e ${seconds}s] ${line}\n`);
}

export class E2E {
  constructor(name) {
    this.name = name;
    this.slug = slug(name);
    this.servers = [];
    this.homes = [];
    this.pages = [];
    this.cleanups = [];
    this.browser = null;
    this.shotCount = 0;
  }

  check(what) {
    log(`check: ${what}`);
  }

  note(what) {
    log(`  ${what}`);
  }

  home(label = this.slug) {
    const home = makeHome(label.slice(0, 20));
    this.homes.push(home);
    return home;
  }

  /** `hearth serve` on a new (or the given) data directory; see server.mjs for the options. */
  async server(options = {}) {
    const name = options.name ?? `${this.slug}-server${this.servers.length + 1}`;
    const home = options.home ?? this.home();
    // Registered before it is ready, so a model that never loads still has its log reported.
    const server = await startServer({ ...options, home, name, waitReady: false });
    this.servers.push(server);
    if (options.waitReady !== false) await server.waitReady();
    return server;
  }

  /**
   * Opens the UI served by `server` at `path` in a fresh audited page, with the access token in
   * the URL as `hearth serve` prints it (`{ token: false }`: without it).
   */
  async open(server, path = '/', { token = true } = {}) {
    this.browser ??= await launchBrowser();
    let base = server.url;
    if (process.env.HEARTH_E2E_UI_DIST) {
      // Development aid only (see dev-ui-proxy.mjs); the page origin is the proxy's.
      const { startDevUiProxy } = await import('./dev-ui-proxy.mjs');
      const proxy = await startDevUiProxy(process.env.HEARTH_E2E_UI_DIST, server.url);
      this.cleanups.push(() => proxy.close());
      base = proxy.url;
      log(`  (HEARTH_E2E_UI_DIST: the UI comes from ${process.env.HEARTH_E2E_UI_DIST} through ${base})`);
    }
    const opened = await openAuditedPage(this.browser);
    this.pages.push(opened);
    this.page = opened.page;
    this.audit = opened.audit;
    const query = token && server.token ? `${path.includes('?') ? '&' : '?'}token=${server.token}` : '';
    const response = await opened.page.goto(`${base}${path}${query}`, { waitUntil: 'domcontentloaded' });
    assert.ok(response, `no response for ${base}${path}`);
    assert.equal(response.status(), 200, `GET ${path} answered ${response.status()}: is ui/dist embedded in hearth?`);
    if (query) {
      // The UI takes the token once and removes it from the address bar.
      await opened.page.waitForFunction(() => !window.location.search.includes('token='), null, { timeout: 10_000 });
    }
    return opened.page;
  }

  /** Saves a screenshot of the current page under test-output/e2e/. */
  async screenshot(label, page = this.page) {
    mkdirSync(OUTPUT_DIR, { recursive: true });
    this.shotCount += 1;
    const file = join(OUTPUT_DIR, `${this.slug}-${String(this.shotCount).padStart(2, '0')}-${slug(label)}.png`);
    await page.screenshot({ path: file, fullPage: true, timeout: 15_000 });
    log(`  screenshot: ${file}`);
    return file;
  }

  /** Registers a function to run at cleanup, newest first. */
  defer(cleanup) {
    this.cleanups.push(cleanup);
  }

  /** What every UI test asserts at its end: nothing left loopback, nothing ran. */
  assertPagesClean() {
    for (const { audit } of this.pages) {
      assert.deepEqual(audit.offLoopback, [], `requests left 127.0.0.1: ${audit.offLoopback.join(', ')}`);
      assert.deepEqual(audit.dialogs, [], `a dialog opened (a script ran): ${audit.dialogs.join('; ')}`);
      assert.deepEqual(audit.pageErrors, [], `page errors: ${audit.pageErrors.join('; ')}`);
    }
    if (this.pages.length > 0) {
      const total = this.pages.reduce((sum, { audit }) => sum + audit.requests.length, 0);
      this.check(`all ${total} browser requests stayed on 127.0.0.1; no dialog, no page error`);
    }
  }

  async reportFailure(error) {
    log(`FAILED: ${this.name}: ${error?.stack ?? error}`);
    for (const [index, { page, audit }] of this.pages.entries()) {
      try {
        if (!page.isClosed()) {
          const file = join(OUTPUT_DIR, `FAILED-${this.slug}-page${index + 1}.png`);
          mkdirSync(OUTPUT_DIR, { recursive: true });
          await page.screenshot({ path: file, fullPage: true, timeout: 10_000 });
          log(`  screenshot of the page at the failure: ${file} (${page.url()})`);
        }
      } catch (shotError) {
        log(`  (no screenshot: ${shotError.message})`);
      }
      const tail = audit.console.slice(-20);
      if (tail.length) log(`  browser console (last ${tail.length}):\n${tail.map((l) => `    ${l}`).join('\n')}`);
      if (audit.offLoopback.length) log(`  blocked off-loopback requests: ${audit.offLoopback.join(', ')}`);
      if (audit.dialogs.length) log(`  dialogs: ${audit.dialogs.join('; ')}`);
      if (audit.pageErrors.length) log(`  page errors: ${audit.pageErrors.join('; ')}`);
    }
    for (const server of this.servers) {
      const file = server.saveLog();
      const lines = server.log().trimEnd().split('\n').slice(-LOG_TAIL_LINES);
      log(`  server log ${server.name} (last ${lines.length} lines; all: ${file}):\n${lines.map((l) => `    | ${l}`).join('\n')}`);
    }
  }

  async close() {
    const errors = [];
    for (const cleanup of this.cleanups.reverse()) {
      await cleanup().catch((error) => errors.push(error));
    }
    for (const { context } of this.pages) await context.close().catch(() => {});
    if (this.browser) await this.browser.close().catch(() => {});
    for (const server of this.servers) {
      const stopping = Date.now();
      await server.stop().catch((error) => errors.push(error));
      const took = Date.now() - stopping;
      if (took > 2_000) log(`  (${server.name} took ${(took / 1000).toFixed(1)} s to stop after SIGTERM)`);
      if (server.handle.forced) log(`  (${server.name}: processes ${server.handle.forced.join(', ')} needed SIGKILL)`);
      const left = server.survivors();
      if (left.length) errors.push(new Error(`${server.name} left processes behind: ${left.join(', ')}`));
    }
    for (const home of this.homes) removeHome(home);
    if (errors.length) throw errors[0];
  }
}

/**
 * Declares a test. `body(e2e)` gets an E2E; it must finish within `timeout` ms, after which
 * everything it started is stopped and the test fails with the page and the server logs.
 */
export function e2eTest(name, { timeout = TEST_TIMEOUT, skip } = {}, body) {
  test(name, { timeout: timeout + CLEANUP_MARGIN, skip }, async () => {
    const e2e = new E2E(name);
    testStarted = Date.now();
    const started = testStarted;
    log(`--- ${name}`);
    let timer;
    const expired = new Promise((_, reject) => {
      timer = setTimeout(() => reject(new Error(`timed out after ${timeout} ms`)), timeout);
    });
    try {
      await Promise.race([body(e2e), expired]);
      e2e.assertPagesClean();
    } catch (error) {
      await e2e.reportFailure(error);
      throw error;
    } finally {
      clearTimeout(timer);
      await e2e.close();
      log(`--- ${name}: ${((Date.now() - started) / 1000).toFixed(1)} s`);
    }
  });
}
