// What bounds the latencies on this machine, measured in the same run: the parts of a task's
// start that pg-tasks cannot remove, each alone.
//  - spawn → running: C posix_spawn of the stamp program (bench/spawn-latency.c), idle between
//    spawns, to the child's own stamp: fork/exec and dynamic linking;
//  - a round trip to the server (SELECT 1) after 20 ms idle, as the node's claim comes after idle;
//  - a one-row durable commit (INSERT, autocommit) after 20 ms idle: the round trip plus the
//    WAL flush a claim must wait for;
//  - NOTIFY: from the notifying commit's acknowledgement to a listener's receipt.
// A task's start from the acknowledgement of its INSERT needs at least the notification, one
// claim (a commit) and the spawn: their sum is printed as the floor.
//   npx tsx bench/floors.ts [--quick] [--fast] [--n 200]
import { execFileSync } from 'node:child_process';
import path from 'node:path';
import pg from 'pg';
import { arg, metric, nowMs, setUpDatabase } from './lib.js';

const quick = process.argv.includes('--quick');
const n = Number(arg('--n') ?? (quick ? 20 : 200));
const idle = (): Promise<void> => new Promise((resolve) => setTimeout(resolve, 20));
const p50 = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

const db = await setUpDatabase();
try {
  let spawn: number | null = null;
  try {
    const program = path.join(db.dir, 'spawn-latency');
    execFileSync('cc', ['-O2', '-o', program, path.join(import.meta.dirname, 'spawn-latency.c')]);
    const out = execFileSync(program, [String(n), db.stamp[0]!, db.dir], { encoding: 'utf8' });
    spawn = p50(out.trim().split('\n').map(Number));
  } catch {
    // No C compiler (the stamp is then a shell script): not measured.
  }
  const rt: number[] = [];
  for (let i = 0; i < n; i++) {
    await idle();
    const t = performance.now();
    await db.client.query('SELECT 1');
    rt.push(performance.now() - t);
  }
  const table = `floors_${process.pid}`;
  await db.client.query(`CREATE TABLE ${table} (a int)`);
  const commit: number[] = [];
  for (let i = 0; i < n; i++) {
    await idle();
    const t = performance.now();
    await db.client.query(`INSERT INTO ${table} VALUES (1)`);
    commit.push(performance.now() - t);
  }
  await db.client.query(`DROP TABLE ${table}`);
  const listener = new pg.Client({ connectionString: db.url });
  await listener.connect();
  await listener.query(`LISTEN ${table}`);
  const notify: number[] = [];
  for (let i = 0; i < n; i++) {
    await idle();
    const received = new Promise<number>((resolve) => listener.once('notification', () => resolve(nowMs())));
    await db.client.query(`NOTIFY ${table}`);
    const acked = nowMs();
    notify.push((await received) - acked);
  }
  await listener.end();
  const [r, c, no] = [p50(rt), p50(commit), p50(notify)];
  metric('floor.spawn.p50', spawn ?? NaN);
  metric('floor.commit.p50', c);
  const floor = spawn === null ? null : Math.max(0, no) + c + spawn;
  // A schedule's start waits for one more commit than a queued task's: the fire's own.
  if (floor !== null) {
    metric('floor.start.p50', floor);
    metric('floor.schedule.p50', floor + c);
  }
  console.log(
    `floors (p50, ${n} each, idle 20 ms between): spawn → running ${spawn === null ? 'not measured (no C compiler)' : `${spawn.toFixed(2)} ms`} (C posix_spawn of the stamp program); ` +
      `a round trip ${r.toFixed(2)} ms (SELECT 1); a one-row commit ${c.toFixed(2)} ms; NOTIFY, acknowledgement → listener ${no.toFixed(2)} ms` +
      (floor === null ? '' : `; a start from the acknowledgement needs at least NOTIFY + one commit (the claim) + the spawn: ${floor.toFixed(2)} ms`),
  );
} finally {
  await db.close();
}
