// Every page of the UI opens and shows what it is for, with a screenshot of each under
// test-output/e2e/: chat, models (catalog with fit badges), hardware (the probe's report and
// the active plan), settings (the data directory is this server's HEARTH_HOME; About with the
// version, commit, llama.cpp and the third-party licences).
import assert from 'node:assert/strict';
import { api, createConversation, sendMessage } from './lib/api.mjs';
import { e2eTest } from './lib/e2e.mjs';
import { byId, openConversation } from './lib/ui.mjs';

e2eTest('every page opens: chat, models, hardware, settings', {}, async (e2e) => {
  const server = await e2e.server();
  const conversation = await createConversation(server, { title: 'A conversation', settings: { max_tokens: 16 } });
  await sendMessage(server, conversation.id, 'Hello!');
  const index = await api(server, 'GET', '/');
  assert.equal(index.status, 200, 'GET / does not serve the UI: is ui/dist embedded in hearth?');
  const csp = index.headers.get('content-security-policy') ?? '';
  const scriptSrc = /script-src ([^;]*)/.exec(csp)?.[1] ?? '';
  assert.ok(csp.includes("default-src 'self'"), `the UI has no strict CSP: ${csp || '(none)'}`);
  assert.equal(scriptSrc.trim(), "'self'", `script-src is not only 'self': ${scriptSrc}`);
  assert.equal(index.headers.get('x-content-type-options'), 'nosniff');
  e2e.check(`GET / serves the UI with a strict CSP (script-src 'self') and nosniff`);
  const page = await e2e.open(server);
  await openConversation(page, 'A conversation');
  await byId(page, 'message-assistant').first().waitFor({ state: 'visible' });
  e2e.check('chat: the conversation opens with its answer');
  await e2e.screenshot('chat page');

  await byId(page, 'nav-models').click();
  await byId(page, 'catalog-item').first().waitFor({ state: 'visible' });
  const catalogItems = await byId(page, 'catalog-item').count();
  assert.ok(catalogItems >= 1, 'the catalog is empty');
  const badges = await byId(page, 'fit-badge').allTextContents();
  e2e.check(`models: ${catalogItems} catalog entries, ${badges.length} fit badges (${[...new Set(badges.map((b) => b.trim()))].join(', ')})`);
  await e2e.screenshot('models page');

  await byId(page, 'nav-hardware').click();
  const cpu = byId(page, 'hardware-cpu');
  await cpu.waitFor({ state: 'visible' });
  assert.match(await cpu.textContent(), /\d/, 'the CPU report shows no figures');
  await byId(page, 'hardware-memory').waitFor({ state: 'visible' });
  const system = (await api(server, 'GET', '/api/system')).json;
  const cpuText = await cpu.textContent();
  assert.ok(cpuText.includes(String(system.probe.cpu.logical_cores)), `the CPU report does not show ${system.probe.cpu.logical_cores} cores`);
  const plan = system.loaded?.[0]?.plan;
  if (plan) {
    await page.waitForFunction(
      (n) => /\d/.test(document.querySelector('[data-testid="active-plan"]')?.textContent ?? '') &&
        (document.querySelector('[data-testid="active-plan"]')?.textContent ?? '').replace(/[ ,.\u202f]/g, '').includes(String(n)),
      plan.n_ctx,
      { timeout: 10_000 },
    );
  }
  e2e.check(`hardware: CPU (${system.probe.cpu.logical_cores} cores) and memory reports, and the active plan (n_ctx ${plan?.n_ctx}) are shown`);
  await e2e.screenshot('hardware page');

  await byId(page, 'nav-settings').click();
  const dataDir = byId(page, 'data-dir');
  await dataDir.waitFor({ state: 'visible' });
  await assert.doesNotReject(
    page.waitForFunction(
      ([home]) => document.querySelector('[data-testid="data-dir"]')?.textContent?.includes(home),
      [server.home],
      { timeout: 10_000 },
    ),
    `settings do not show the data directory ${server.home}`,
  );
  e2e.check(`settings: the data directory is this server's HEARTH_HOME (${server.home})`);
  await e2e.screenshot('settings page');

  // About: the server's version, commit and llama.cpp, and the licences on request.
  const about = (await api(server, 'GET', '/api/about')).json;
  const version = byId(page, 'about-hearth');
  await version.waitFor({ state: 'visible' });
  assert.equal(await version.textContent(), about.version);
  assert.equal(await byId(page, 'about-commit').textContent(), about.commit);
  assert.ok((await byId(page, 'about-llamacpp').textContent()).includes(about.llama_cpp.ggml));
  await byId(page, 'show-licenses').click();
  const licenses = byId(page, 'licenses');
  await licenses.waitFor({ state: 'visible' });
  const text = await licenses.textContent();
  assert.ok(text.includes('The ggml authors') && text.includes('marked '), 'the licences are not shown');
  e2e.check(`settings: About shows Hearth ${about.version} (commit ${about.commit}) and the third-party licences`);
  await e2e.screenshot('settings about and licences');

  await byId(page, 'nav-chat').click();
  await byId(page, 'composer').waitFor({ state: 'visible' });
  e2e.check('back to chat');
});

e2eTest('settings are saved by the server and survive a reload', {}, async (e2e) => {
  const server = await e2e.server();
  const before = await api(server, 'GET', '/api/settings');
  assert.equal(before.status, 200, `GET /api/settings answered ${before.status}`);
  const page = await e2e.open(server);
  await byId(page, 'nav-settings').click();
  const theme = byId(page, 'theme-select');
  await theme.waitFor({ state: 'visible' });
  // Wait until the form holds the server's settings (the port) and the model choices: a choice
  // made before they arrive would be overwritten by them.
  await page.waitForFunction(
    () =>
      document.querySelector('[data-testid="api-port"]')?.value !== '' &&
      Array.from(document.querySelectorAll('[data-testid="default-model-select"] option')).some((o) => o.value),
    null,
    { timeout: 10_000 },
  );
  const newTheme = before.json.theme === 'dark' ? 'light' : 'dark';
  await theme.selectOption(newTheme);
  const modelSelect = byId(page, 'default-model-select');
  const modelOptions = await modelSelect.locator('option').evaluateAll((options) => options.map((o) => o.value).filter(Boolean));
  assert.ok(modelOptions.length > 0, 'the default-model list is empty');
  await modelSelect.selectOption(modelOptions[0]);
  await byId(page, 'settings-save').click();
  e2e.check(`theme ${newTheme} and default model ${modelOptions[0]} chosen and saved`);
  const deadline = Date.now() + 10_000;
  let saved = before.json;
  while (Date.now() < deadline && (saved.theme !== newTheme || saved.default_model !== modelOptions[0])) {
    await new Promise((resolve) => setTimeout(resolve, 200));
    saved = (await api(server, 'GET', '/api/settings')).json;
  }
  assert.equal(saved.theme, newTheme, 'the server did not save the theme');
  assert.equal(saved.default_model, modelOptions[0], 'the server did not save the default model');
  e2e.check('GET /api/settings returns both');
  await page.reload();
  await byId(page, 'nav-settings').click();
  await theme.waitFor({ state: 'visible' });
  await page.waitForFunction(
    ([wanted]) => document.querySelector('[data-testid="default-model-select"]')?.value === wanted,
    [modelOptions[0]],
    { timeout: 10_000 },
  );
  assert.equal(await theme.inputValue(), newTheme, 'the theme was not kept across a reload');
  e2e.check('after a reload the settings page shows the saved theme and default model');
  await e2e.screenshot(`settings ${newTheme}`);
});
