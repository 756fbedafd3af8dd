// `hearth serve` for a test: a temporary HEARTH_HOME, a free loopback port read from stdout,
// /health awaited, the log kept (and written under test-output/e2e/logs), everything stopped.
import { mkdtempSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  HEARTH_BIN, OUTPUT_DIR, SERVER_READY_TIMEOUT, SERVER_START_TIMEOUT, SMOLLM2_PATH, STOP_GRACE,
  requireFile,
} from './env.mjs';
import { processesMarked, startMarked } from './processes.mjs';

export const LISTENING_PREFIX = 'Hearth API listening on ';
/** The line after it: the web UI's URL with the access token (`/api/*` needs it). */
export const UI_URL_PREFIX = 'Open the web UI at ';
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** A new empty data directory, removed by `removeHome`. */
export function makeHome(label = 'home') {
  return mkdtempSync(join(tmpdir(), `hearth-e2e-${label}-`));
}

export function removeHome(home) {
  rmSync(home, { recursive: true, force: true });
}

/**
 * Starts `hearth serve --port PORT` on `home` and waits for its address.
 * - `model`: a path or id for `--model` (default: the SmolLM2 test model), or null for none.
 * - `wrap`: a command prefix, e.g. `['strace', '-f', ...]`.
 * - `env`: extra environment (HF_ENDPOINT for a loopback hub). The hub token, the API key and
 *   the log filter are removed so the user's environment cannot change what is tested.
 */
export async function startServer({
  home,
  name = 'server',
  model = SMOLLM2_PATH,
  port = 0,
  args = [],
  env = {},
  wrap = [],
  waitReady = true,
} = {}) {
  requireFile(HEARTH_BIN, 'build it with `cargo build --release -p hearth-cli` (scripts/test-e2e does)');
  if (model === SMOLLM2_PATH) requireFile(SMOLLM2_PATH, 'run scripts/fetch-test-models smollm2');
  const serveArgs = ['serve', '--port', String(port), ...(model ? ['--model', model] : []), ...args];
  const command = wrap.length > 0 ? wrap[0] : HEARTH_BIN;
  const commandArgs = wrap.length > 0 ? [...wrap.slice(1), HEARTH_BIN, ...serveArgs] : serveArgs;
  let announce;
  const announced = new Promise((resolve) => (announce = resolve));
  let address = null;
  const processEnv = { HEARTH_HOME: home, ...env };
  const handle = startMarked(command, commandArgs, {
    env: processEnv,
    // Not inherited from the user's shell: they would change what is tested.
    unsetEnv: ['HF_TOKEN', 'HEARTH_API_KEY', 'HEARTH_LOG', 'HF_ENDPOINT'].filter((key) => !(key in env)),
    onLine: (line) => {
      const at = line.indexOf(LISTENING_PREFIX);
      if (at >= 0) address = line.slice(at + LISTENING_PREFIX.length).trim();
      const ui = line.indexOf(UI_URL_PREFIX);
      if (ui >= 0 && address) announce({ address, uiUrl: line.slice(ui + UI_URL_PREFIX.length).trim().split(/\s/)[0] });
    },
  });
  const server = new HearthServer(handle, home, name, serveArgs);
  let startTimer;
  const printed = await Promise.race([
    announced,
    handle.spawnError.then(() => null, (error) => { throw new Error(`cannot start ${command}: ${error.message}`); }),
    handle.exited.then(({ code, signal }) => {
      throw new Error(`hearth serve exited (${code ?? signal}) before listening:\n${handle.output()}`);
    }),
    new Promise((_, reject) => {
      startTimer = setTimeout(
        () => reject(new Error(`hearth serve printed no address in ${SERVER_START_TIMEOUT} ms:\n${handle.output()}`)),
        SERVER_START_TIMEOUT,
      );
    }),
  ]).catch(async (error) => {
    await server.stop().catch(() => {});
    throw error;
  }).finally(() => clearTimeout(startTimer));
  server.url = printed.address.replace(/\/$/, '');
  // The URL `hearth serve` prints for the browser, and its token (kept in HOME/api-token).
  server.uiUrl = printed.uiUrl;
  server.token = new URL(printed.uiUrl).searchParams.get('token');
  server.apiKey = env.HEARTH_API_KEY ?? server.token;
  server.port = Number(new URL(server.url).port);
  if (waitReady) {
    await server.waitReady().catch(async (error) => {
      await server.stop().catch(() => {});
      throw error;
    });
  }
  return server;
}

export class HearthServer {
  constructor(handle, home, name, serveArgs) {
    this.handle = handle;
    this.home = home;
    this.name = name;
    this.serveArgs = serveArgs;
    this.url = null;
    this.stopped = false;
  }

  get pid() {
    return this.handle.child.pid;
  }

  log() {
    return this.handle.output();
  }

  /** Polls /health until it answers 200 (the model is loaded), within SERVER_READY_TIMEOUT. */
  async waitReady(timeout = SERVER_READY_TIMEOUT) {
    const deadline = Date.now() + timeout;
    let last = 'no answer';
    while (Date.now() < deadline) {
      if (this.handle.child.exitCode !== null || this.handle.child.signalCode !== null) {
        throw new Error(`hearth serve exited while loading:\n${this.log()}`);
      }
      try {
        const response = await fetch(`${this.url}/health`, {
          headers: this.apiKey ? { Authorization: `Bearer ${this.apiKey}` } : {},
          signal: AbortSignal.timeout(5_000),
        });
        last = `${response.status} ${await response.text()}`;
        if (response.status === 200) return;
      } catch (error) {
        last = error.message;
      }
      await sleep(200);
    }
    throw new Error(`/health did not turn 200 in ${timeout} ms (last: ${last})`);
  }

  /** SIGKILL to the server process itself (not its group): a crash, as the OS would do it. */
  crash() {
    process.kill(this.pid, 'SIGKILL');
    return this.handle.exited;
  }

  /** The processes this server started that are still alive (the engine worker among them). */
  survivors() {
    return processesMarked(this.handle.token);
  }

  /** Stops the server and everything it started (SIGTERM, then SIGKILL), and saves its log. */
  async stop() {
    if (this.stopped) return;
    this.stopped = true;
    try {
      await this.handle.stop(STOP_GRACE);
    } finally {
      this.saveLog();
    }
  }

  saveLog(suffix = '') {
    try {
      mkdirSync(join(OUTPUT_DIR, 'logs'), { recursive: true });
      const file = join(OUTPUT_DIR, 'logs', `${this.name}${suffix}.log`);
      writeFileSync(file, `$ hearth ${this.serveArgs.join(' ')}\n${this.log()}`);
      return file;
    } catch {
      return null;
    }
  }
}
