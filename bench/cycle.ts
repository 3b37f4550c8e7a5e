// Where a slot's time goes: one node in this process (its real spawner), N × /bin/true at a
// concurrency, every run's hops timed from the node's own events:
//   wait    its slot freed (the previous run's end) → the claim that refilled it was sent
//   claim   that statement's round trip (a turnover: it also wrote the ends before it)
//   spawn   the claim's reply → the process runs (run:started)
//   life    the process runs → its end is known (run:ended: exit seen, outcome made)
// A slot's cycle is their sum; the node's rate is slots / cycle. A diagnostic, not a goal:
// The hops overlap a little (a slot frees before its end is reported), so the sum is a bound.
//   npx tsx bench/cycle.ts [--quick] [--n 3000] [--concurrency 8,32] [--fast]
import os from 'node:os';
import pino from 'pino';
import { TaskNode } from '../src/node/node.js';
import { NODE_DEFAULTS } from '../src/node/options.js';
import type { SpawnerMode } from '../src/node/process/spawner.js';
import { arg, metric, serverDurability, setUpDatabase } from './lib.js';

const quick = process.argv.includes('--quick');
const n = Number(arg('--n') ?? (quick ? 200 : 3000));
const levels = (arg('--concurrency') ?? '8,32').split(',').map(Number);
const db = await setUpDatabase();
console.log(`server: ${await serverDurability(db.client)}`);

interface Run { claimSent: number; claimReply: number; started: number; ended: number; freedBy: number | null }

async function cycle(slots: number): Promise<void> {
  const schema = `cycle_${process.pid}_${slots}`;
  const runs = new Map<string, Run>();
  /** Claims by the instant they were sent: [sent, replied]. */
  const claims: Array<[number, number]> = [];
  /** Ends not yet matched with the claim that refilled their slot, oldest first. */
  const freed: number[] = [];
  let ended = 0;
  const node = new TaskNode({
    ...NODE_DEFAULTS,
    connectionString: db.url,
    schema,
    workerId: 1,
    nodeName: 'cycle',
    rootDir: os.tmpdir(),
    maxTasks: slots,
    logger: pino({ level: 'warn' }, pino.destination(2)),
    migrate: true,
    outputKeep: 0,
    spawner: (process.env.PGTASKS_SPAWNER as SpawnerMode | undefined) ?? 'auto',
  });
  node.events.on('claim', ({ ms }) => {
    const now = performance.now();
    claims.push([now - ms, now]);
  });
  node.events.on('run:started', ({ taskId, attempt, startMs }) => {
    const now = performance.now();
    const claimSent = now - startMs;
    let claim: [number, number] | undefined;
    for (let i = claims.length - 1; i >= 0 && !claim; i--) if (Math.abs(claims[i]![0] - claimSent) < 0.01) claim = claims[i];
    // The slot this run took was freed by the oldest end not yet refilled that came before its
    // claim was sent (none: a slot free from before, e.g. the first fill).
    const freedBy = freed.length > 0 && freed[0]! <= claimSent ? freed.shift()! : null;
    runs.set(`${taskId}:${attempt}`, { claimSent, claimReply: claim?.[1] ?? claimSent, started: now, ended: 0, freedBy });
  });
  node.events.on('run:ended', ({ taskId, attempt }) => {
    const now = performance.now();
    const run = runs.get(`${taskId}:${attempt}`);
    if (run) run.ended = now;
    freed.push(now);
    ended++;
  });

  await node.start();
  while (node.state !== 'active') await new Promise((resolve) => setTimeout(resolve, 20));
  const s = `"${schema}"`;
  await db.client.query(`UPDATE ${s}.worker SET stop = 1 WHERE id = 1`);
  await db.client.query(`INSERT INTO ${s}.task (state_id, command) SELECT 'AW', '{/bin/true}' FROM generate_series(1, $1)`, [n]);
  const begun = performance.now();
  await db.client.query(`UPDATE ${s}.worker SET stop = 0 WHERE id = 1`);
  while (ended < n) await new Promise((resolve) => setTimeout(resolve, 20));
  const seconds = (performance.now() - begun) / 1000;
  await node.shutdown('drain', 'cycle bench over');
  await db.client.query(`DROP SCHEMA ${s} CASCADE`);

  const all = [...runs.values()].filter((r) => r.freedBy !== null && r.ended > 0);
  const p50 = (values: number[]): number => values.sort((a, b) => a - b)[Math.floor(values.length / 2)] ?? NaN;
  const mean = (values: number[]): number => values.reduce((a, b) => a + b, 0) / values.length;
  const hops = {
    wait: all.map((r) => r.claimSent - r.freedBy!),
    claim: all.map((r) => r.claimReply - r.claimSent),
    spawn: all.map((r) => r.started - r.claimReply),
    life: all.map((r) => r.ended - r.started),
  };
  const parts: string[] = [];
  let total = 0;
  for (const [name, values] of Object.entries(hops)) {
    const m = mean(values);
    total += m;
    metric(`cycle.${slots}.${name}`, m);
    parts.push(`${name} ${m.toFixed(2)} (p50 ${p50(values).toFixed(2)})`);
  }
  console.log(
    `slot cycle, ${n} × /bin/true at ${slots} (one node in the bench's process): ${(n / seconds).toFixed(0)}/s, ` +
      `${claims.length} claims (${(n / Math.max(1, claims.length)).toFixed(2)} tasks each); a slot's cycle ${total.toFixed(2)} ms (mean), ` +
      `of which, ms: ${parts.join(', ')}`,
  );
}

for (const slots of levels) await cycle(slots);
await db.close();
