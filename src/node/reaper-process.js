// The reaper: a small process each node starts beside itself. The node tells it, one line
// each, which task process groups it runs ("+PGID") and which have ended ("-PGID"). When the
// node dies in any way, even by SIGKILL, its end of the pipe closes, and the reaper kills every
// group still listed, so no task process outlives its node unsupervised.
// Plain JavaScript with no imports, so it starts in a few milliseconds.
const groups = new Set();
let buffered = '';

process.stdin.setEncoding('utf8');
process.stdin.on('data', (chunk) => {
  buffered += String(chunk);
  let newline;
  while ((newline = buffered.indexOf('\n')) >= 0) {
    const line = buffered.slice(0, newline);
    buffered = buffered.slice(newline + 1);
    const pgid = Number(line.slice(1));
    if (!Number.isInteger(pgid) || pgid <= 1) continue;
    if (line[0] === '+') groups.add(pgid);
    else if (line[0] === '-') groups.delete(pgid);
  }
});

process.stdin.on('end', () => {
  for (const pgid of groups) {
    try {
      process.kill(-pgid, 'SIGKILL');
    } catch {
      // already gone
    }
  }
  process.exit(0);
});

// Signals meant for the node's terminal or group are not for the reaper: only the pipe ends it.
process.on('SIGINT', () => undefined);
process.on('SIGTERM', () => undefined);
process.on('SIGHUP', () => undefined);
