// First run and downloads: with an empty HEARTH_HOME (no model installed) the UI opens on the
// first-run screen with the planner's recommendation; one click downloads it from a loopback
// stand-in for the model hub (which answers every catalog file with the SmolLM2 test model,
// throttled to take a few seconds); the progress bar moves; the download
// can be paused and resumed (a Range request continues it); it ends installed and a chat with
// it works. HF_ENDPOINT points the server at the stand-in.
import assert from 'node:assert/strict';
import { apiOk, createConversation } from './lib/api.mjs';
import { e2eTest } from './lib/e2e.mjs';
import { startHub } from './lib/hub.mjs';
import { SMOLLM2_PATH } from './lib/env.mjs';
import { byId, lastAnswerOf, openConversation, send, waitForPageToMatchServer } from './lib/ui.mjs';

const DOWNLOAD_SECONDS = 8;
const DOWNLOAD_TIMEOUT = 120_000;
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** The first download bar's value (the downloaded fraction), or null when there is none. */
async function readProgress(page) {
  return page.evaluate(() => {
    const bar = document.querySelector('[data-testid="download-progress"]');
    return bar ? Number(bar.value) : null;
  });
}

e2eTest('first run recommends a model; its download shows a moving progress bar, pauses and resumes; then chat works', {}, async (e2e) => {
  const hub = await startHub({ seconds: DOWNLOAD_SECONDS, anyFile: true });
  e2e.defer(() => hub.close());
  const server = await e2e.server({ name: 'first-run', model: null, env: { HF_ENDPOINT: hub.endpoint } });
  const models = await apiOk(server, 'GET', '/api/models');
  assert.deepEqual(models.models, [], 'HEARTH_HOME is empty, yet models are installed');
  const recommendation = models.recommendation;
  assert.ok(recommendation, 'GET /api/models gives no recommendation on this machine');
  e2e.note(`recommendation: ${JSON.stringify(recommendation)}`);

  const page = await e2e.open(server);
  const firstRun = byId(page, 'first-run');
  await firstRun.waitFor({ state: 'visible' });
  const firstRunText = await firstRun.textContent();
  assert.ok(
    firstRunText.includes(recommendation.name) || firstRunText.includes(recommendation.model),
    `the first-run screen does not name the recommendation ${recommendation.name}:\n${firstRunText}`,
  );
  e2e.check(`the first-run screen shows the recommendation: ${recommendation.name} ${recommendation.quantization ?? ''}`);
  await e2e.screenshot('first run');

  // The stand-in hub answers any catalog file with the test model, so the recommended model
  // (whichever it is on this machine) downloads with the first-run screen's one click.
  await byId(page, 'first-run-download').click();
  e2e.check('the first-run download button was pressed (one click)');

  const progress = byId(page, 'download-progress').first();
  await progress.waitFor({ state: 'visible' });
  const values = [];
  let shot = false;
  let paused = false;
  const deadline = Date.now() + DOWNLOAD_TIMEOUT;
  let installed = false;
  while (Date.now() < deadline) {
    // Read without waiting: the bar goes away once the model is installed.
    const value = await readProgress(page);
    if (value !== null && !Number.isNaN(value) && values.at(-1) !== value) values.push(value);
    if (!shot && value > 0.3) {
      await e2e.screenshot('download in progress');
      shot = true;
    }
    if (!paused && value > 0.4 && value < 0.8) {
      paused = true;
      await byId(page, 'download-pause').first().click();
      await byId(page, 'download-resume').first().waitFor({ state: 'visible' });
      await sleep(500); // bytes already in flight settle
      const atPause = await readProgress(page);
      const sentAtPause = hub.sentBytes();
      await sleep(1_500);
      const afterPause = await readProgress(page);
      assert.equal(afterPause, atPause, `the progress bar moved while paused (${atPause} -> ${afterPause})`);
      assert.ok(hub.sentBytes() - sentAtPause < 2 * 1024 * 1024, 'the hub kept sending while the download was paused');
      e2e.check(`Pause holds the download at ${(atPause * 100).toFixed(0)}% (the bar and the hub both stop)`);
      await byId(page, 'download-resume').first().click();
      e2e.check('Resume was pressed');
    }
    const { models: installedModels } = await apiOk(server, 'GET', '/api/models');
    if (installedModels.length > 0) {
      installed = true;
      break;
    }
    await sleep(100);
  }
  e2e.note(`progress values seen: ${values.map((v) => v.toFixed(2)).join(' ')}`);
  assert.ok(installed, `the download did not finish in ${DOWNLOAD_TIMEOUT} ms`);
  const moving = values.filter((v) => v > 0 && v < 1);
  assert.ok(moving.length >= 3, `the progress bar did not move (values between 0 and 1: ${moving.join(', ') || 'none'})`);
  for (let i = 1; i < values.length; i += 1) {
    assert.ok(values[i] >= values[i - 1], `the progress bar went backwards: ${values[i - 1]} -> ${values[i]}`);
  }
  e2e.check(`the progress bar moved through ${moving.length} values between 0 and 1 and never went back`);
  assert.ok(hub.requests.some((r) => r.method === 'GET' && r.status && r.status < 300), 'the hub served no file');
  assert.ok(paused, 'the download was never paused (it finished too fast to press Pause)');
  assert.ok(hub.requests.some((r) => r.range && !r.range.startsWith('bytes=0-')), 'after Resume the download did not continue with a Range request');
  e2e.check('after Resume the download continued from where it stopped (a Range request to the hub)');
  e2e.check(`the model came from the loopback hub (${hub.requests.length} requests: ${[...new Set(hub.requests.map((r) => `${r.method} ${r.status}`))].join(', ')})`);

  await byId(page, 'first-run').waitFor({ state: 'hidden' });
  e2e.check('the first-run screen is gone once the model is installed');
  const { models: installedModels } = await apiOk(server, 'GET', '/api/models');
  const modelId = installedModels[0].id;
  const recommendedId = recommendation.model.split(':')[0];
  assert.ok(modelId.startsWith(recommendedId), `installed ${modelId}, but ${recommendation.model} was recommended`);
  e2e.check(`the recommended model is installed as ${modelId}`);
  const conversation = await createConversation(server, { title: 'After download', settings: { max_tokens: 16 } });
  await apiOk(server, 'PATCH', `/api/conversations/${conversation.id}`, { model: modelId });
  await page.reload();
  await openConversation(page, 'After download');
  await send(page, 'Say hello.');
  const saved = await waitForPageToMatchServer(page, server, conversation.id, (c) => lastAnswerOf(c)?.status === 'complete');
  e2e.check(`the downloaded model (${modelId}) answers in the UI: ${JSON.stringify(lastAnswerOf(saved).content)}`);
  await e2e.screenshot('chat with the downloaded model');
});

e2eTest('a GGUF file imported from the Models page is installed and listed', {}, async (e2e) => {
  const server = await e2e.server({ name: 'import', model: null });
  const page = await e2e.open(server);
  await byId(page, 'first-run').waitFor({ state: 'visible' });
  await byId(page, 'nav-models').click();
  await byId(page, 'import-path').fill(SMOLLM2_PATH);
  await byId(page, 'import-button').click();
  e2e.check(`a path was typed in the import field: ${SMOLLM2_PATH}`);
  const item = byId(page, 'installed-model').first();
  await item.waitFor({ state: 'visible', timeout: 60_000 });
  const { models } = await apiOk(server, 'GET', '/api/models');
  assert.equal(models.length, 1, 'the server lists no imported model');
  assert.ok((await item.textContent()).includes(models[0].id), `the installed model ${models[0].id} is not shown`);
  e2e.check(`the model is installed as ${models[0].id} and listed on the Models page`);
  await e2e.screenshot('imported model');
});
