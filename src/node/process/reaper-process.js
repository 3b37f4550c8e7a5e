// The reaper: a small process each node starts beside itself. The node tells it, one line
// each, which runs it has ("+KEY PGID", or "+KEY PGID HELPER" for a run with a supervisor,
// a child of the spawn helper HELPER) and which have ended ("-KEY"). When the node dies in any
// way, even by SIGKILL, its end of the pipe closes, and the reaper kills every group still
// listed (the supervisors kill what left their groups: the helper's exit is their signal), so
// no task process outlives its node unsupervised.
//
// It is also the fence's second hand. The node says how long it trusts its lease ("@MS", at
// each take and renewal; "@" alone: no term). If that time passes with no word, the node is
// paused (SIGSTOP, a debugger, a stalled event loop) and cannot keep its own fence: the reaper
// kills the listed groups itself, and asks each spawn helper (SIGUSR2) to have its supervisors
// kill their runs whole, so they are dead before another node may recover their tasks
// (at the lease's end + the recovery delay, later still), and one task never has two live
// processes because its node was frozen (docs/failover.md).
// Plain JavaScript with only a built-in import, so it starts in a few milliseconds.
import { clearTimeout, setTimeout } from 'node:timers';

/** @type {Map<string, { pgid: number, helper: number }>} run key -> its process group, and the helper of its supervisor (0: none) */
const groups = new Map();
let buffered = '';
/** @type {ReturnType<typeof setTimeout> | null} */
let fence = null;

function killAll() {
  /** @type {Set<number>} */
  const helpers = new Set();
  for (const { pgid, helper } of groups.values()) {
    if (helper) helpers.add(helper);
    try {
      process.kill(-pgid, 'SIGKILL');
    } catch {
      // already gone
    }
  }
  for (const helper of helpers) {
    try {
      process.kill(helper, 'SIGUSR2');
    } catch {
      // gone: its supervisors had its death as their signal
    }
  }
}

/** @param {string} line */
function setFence(line) {
  if (fence) clearTimeout(fence);
  fence = null;
  const ms = Number(line.slice(1));
  if (line.length === 1 || !Number.isFinite(ms) || ms < 0) return;
  fence = setTimeout(() => {
    fence = null;
    if (groups.size === 0) return;
    process.stderr.write(`pg-tasks reaper: the node did not renew its lease in time (paused?): killed ${groups.size} task process group(s) at its fence\n`);
    killAll();
  }, Math.min(ms, 2 ** 31 - 1));
}

process.stdin.setEncoding('utf8');
process.stdin.on('data', (chunk) => {
  buffered += String(chunk);
  let newline;
  while ((newline = buffered.indexOf('\n')) >= 0) {
    const line = buffered.slice(0, newline);
    buffered = buffered.slice(newline + 1);
    if (line[0] === '@') {
      setFence(line);
      continue;
    }
    const [key, group, by] = line.slice(1).split(' ');
    if (!key) continue;
    if (line[0] === '-') {
      groups.delete(key);
      continue;
    }
    const pgid = Number(group);
    const helper = by === undefined ? 0 : Number(by);
    if (line[0] !== '+' || !Number.isInteger(pgid) || pgid <= 1 || !Number.isInteger(helper) || helper < 0 || helper === 1) continue;
    groups.set(key, { pgid, helper });
  }
});

process.stdin.on('end', () => {
  killAll();
  process.exit(0);
});

// Signals meant for the node's terminal or group are not for the reaper: only the pipe ends it.
process.on('SIGINT', () => undefined);
process.on('SIGTERM', () => undefined);
process.on('SIGHUP', () => undefined);
