// Child processes that can never outlive a test: every process the suite starts carries a
// marker in its environment (inherited by whatever it starts in turn, such as the engine worker
// in its own process group), so cleanup finds them all through /proc, even after re-parenting.
// The marker starts with $HEARTH_E2E_RUN, so scripts/test-e2e can sweep up after a killed run.
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';

const MARKER = 'HEARTH_E2E_PROCESS';
const started = new Set();

/** The ids of live processes whose environment holds `MARKER=token`. */
export function processesMarked(token) {
  const needle = Buffer.from(`${MARKER}=${token}\0`);
  const found = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const environ = readFileSync(`/proc/${entry}/environ`);
      if (environ.includes(needle) && !isZombie(entry)) found.push(Number(entry));
    } catch {
      // Gone already, or not ours to read.
    }
  }
  return found;
}

function isZombie(pid) {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2).startsWith('Z');
  } catch {
    return true;
  }
}

function killAll(pids, signal) {
  for (const pid of pids) {
    try {
      process.kill(pid, signal);
    } catch {
      // Already gone.
    }
  }
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * Starts `command` in its own process group with a fresh marker. Returns
 * `{ child, token, output(), kill(signal), stop(graceMs), exited }`; `output()` is everything it
 * wrote to stdout and stderr so far; `onLine` sees each line of stdout and stderr.
 */
export function startMarked(command, args, { env = {}, unsetEnv = [], cwd, onLine } = {}) {
  const token = `${process.env.HEARTH_E2E_RUN ?? 'adhoc'}-${process.pid}-${randomBytes(6).toString('hex')}`;
  const childEnv = { ...process.env, ...env, [MARKER]: token };
  for (const key of unsetEnv) delete childEnv[key];
  const child = spawn(command, args, {
    cwd,
    env: childEnv,
    stdio: ['ignore', 'pipe', 'pipe'],
    detached: true, // its own process group, so a signal to the group reaches its helpers
  });
  let output = '';
  const exited = new Promise((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
  const spawnError = new Promise((_, reject) => child.once('error', reject));
  spawnError.catch(() => {});
  for (const stream of [child.stdout, child.stderr]) {
    let partial = '';
    stream.setEncoding('utf8');
    stream.on('data', (chunk) => {
      output += chunk;
      partial += chunk;
      const lines = partial.split('\n');
      partial = lines.pop();
      for (const line of lines) onLine?.(line);
    });
  }
  const handle = {
    child,
    token,
    exited,
    spawnError,
    output: () => output,
    /** Signals the whole process group and every marked process. */
    kill(signal = 'SIGKILL') {
      try {
        process.kill(-child.pid, signal);
      } catch {
        // The group is gone.
      }
      killAll(processesMarked(token), signal);
    },
    /**
     * SIGTERM to the process group only (the server then stops its own helpers, as it would for
     * a user), up to `graceMs` for everything marked to exit, then SIGKILL to all that is left;
     * waits until everything is gone.
     */
    async stop(graceMs = 10_000) {
      try {
        process.kill(-child.pid, 'SIGTERM');
      } catch {
        // The group is gone.
      }
      const deadline = Date.now() + graceMs;
      while (processesMarked(token).length > 0 && Date.now() < deadline) await sleep(50);
      if (processesMarked(token).length > 0) {
        handle.forced = processesMarked(token);
        handle.kill('SIGKILL');
        const hardDeadline = Date.now() + 5_000;
        while (processesMarked(token).length > 0 && Date.now() < hardDeadline) await sleep(50);
      }
      const left = processesMarked(token);
      if (left.length > 0) throw new Error(`processes survived SIGKILL: ${left.join(', ')}`);
      started.delete(handle);
    },
  };
  started.add(handle);
  return handle;
}

/** Kills everything the suite started and has not stopped yet (on exit, even after a failure). */
export function killEverything() {
  for (const handle of started) handle.kill('SIGKILL');
  started.clear();
}

process.once('exit', killEverything);
for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
  process.once(signal, () => {
    killEverything();
    process.exit(130);
  });
}
