// Reads `strace -f -e trace=connect` output and sorts every connect() by where it went.
import { spawnSync } from 'node:child_process';

const BASE = ['-f', '-qq', '-e', 'trace=connect', '-e', 'signal=none'];
/** `--seccomp-bpf` stops only at connect() (cheap); not every kernel or container allows it. */
const VARIANTS = [['--seccomp-bpf', ...BASE], BASE];

/**
 * The strace options that work here, or null with the reason when strace cannot trace at all
 * (missing, or ptrace refused).
 */
export function straceOptions() {
  let reason = 'strace is not installed (apt-get install strace)';
  for (const options of VARIANTS) {
    const run = spawnSync('strace', [...options, '-o', '/dev/null', '--', 'true'], { encoding: 'utf8', timeout: 10_000 });
    if (run.status === 0) return { options, reason: null };
    if (!run.error) reason = `strace cannot trace here: ${(run.stderr || '').trim().split('\n')[0]}`;
  }
  return { options: null, reason };
}

/** The command prefix that records every connect() of a process and all its children. */
export function straceWrap(outputFile, options = straceOptions().options) {
  return ['strace', ...options, '-o', outputFile, '--'];
}

/**
 * Parses strace's lines into `{ pid, family, address, port, local, line }` for each connect().
 * Loopback: AF_INET 127.0.0.0/8, AF_INET6 ::1 or ::ffff:127.x; AF_UNIX sockets and AF_NETLINK
 * (the kernel) are local; AF_UNSPEC only dissolves a UDP association. Anything else is not.
 */
export function parseConnects(text) {
  const connects = [];
  for (const line of text.split('\n')) {
    const match = /^(\d+)\s+connect\(\d+,\s*(.*)$/.exec(line.trim());
    if (!match) continue;
    const [, pid, rest] = match;
    const family = /sa_family=(AF_[A-Z0-9]+)/.exec(rest)?.[1] ?? 'unknown';
    const port = Number(/sin6?_port=htons\((\d+)\)/.exec(rest)?.[1] ?? NaN);
    let address = null;
    let local = false;
    switch (family) {
      case 'AF_INET':
        address = /inet_addr\("([^"]+)"\)/.exec(rest)?.[1] ?? null;
        local = address !== null && address.startsWith('127.');
        break;
      case 'AF_INET6':
        address = /inet_pton\(AF_INET6,\s*"([^"]+)"/.exec(rest)?.[1] ?? null;
        local = address === '::1' || /^::ffff:127\./.test(address ?? '');
        break;
      case 'AF_UNIX':
        address = /sun_path=(@?"[^"]*")/.exec(rest)?.[1] ?? '(unnamed)';
        local = true;
        break;
      case 'AF_NETLINK':
      case 'AF_UNSPEC':
        address = family;
        local = true;
        break;
      default:
        local = false;
    }
    connects.push({ pid: Number(pid), family, address, port, local, line: line.trim() });
  }
  return connects;
}

/** One line per destination with its count: "12 x AF_INET 127.0.0.1:5050". */
export function summarizeConnects(connects) {
  const counts = new Map();
  for (const c of connects) {
    const key = `${c.family} ${c.address ?? '?'}${Number.isNaN(c.port) ? '' : `:${c.port}`}`;
    counts.set(key, (counts.get(key) ?? 0) + 1);
  }
  return [...counts].map(([key, count]) => `${count} x ${key}`);
}
