// The reaper: a small process each node starts beside itself. The node tells it, one line
// each, which task process groups it runs ("+PGID") and which have ended ("-PGID"). When the
// node dies in any way, even by SIGKILL, its end of the pipe closes, and the reaper kills every
// group still listed, so no task process outlives its node unsupervised.
//
// It is also the fence's second hand. The node says how long it trusts its lease ("@MS", at
// each take and renewal; "@" alone: no term). If that time passes with no word, the node is
// paused (SIGSTOP, a debugger, a stalled event loop) and cannot keep its own fence: the reaper
// kills the listed groups itself, so they are dead before another node may recover their tasks
// (at the lease's end + the recovery delay, later still), and one task never has two live
// processes because its node was frozen (docs/failover.md).
// Plain JavaScript with only a built-in import, so it starts in a few milliseconds.
import { clearTimeout, setTimeout } from 'node:timers';

const groups = new Set();
let buffered = '';
/** @type {ReturnType<typeof setTimeout> | null} */
let fence = null;

function killAll() {
  for (const pgid of groups) {
    try {
      process.kill(-pgid, 'SIGKILL');
    } catch {
      // already gone
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
    const pgid = Number(line.slice(1));
    if (!Number.isInteger(pgid) || pgid <= 1) continue;
    if (line[0] === '+') groups.add(pgid);
    else if (line[0] === '-') groups.delete(pgid);
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
