// A promotion under load, followed through a multi-host URL and nothing else (issue 26): a
// primary and a pg_basebackup -R standby on loopback (durable settings), one node given
// postgres://…@127.0.0.1:P1,127.0.0.1:P2/postgres?target_session_attrs=read-write, a burst of
// short tasks; once a quarter of them have started, the primary is stopped (pg_ctl stop -m
// immediate) and the standby promoted. Reported per mode (asynchronous, then synchronous
// replication):
// - from the promotion (pg_ctl promote -w returned) to the first process started after it, to
//   the first result written after it (a run held through the outage counts) and to the first
//   run claimed after it that completed (task_run.started and finished, on the same clock);
// - lost: acknowledged inserts missing on the new primary, and tasks not ended CS (stuck, or
//   ended CF/CC) a generous while after the promotion;
// - duplicated: tasks whose command ran more than once. Each task appends its id, attempt and
//   pid to a file outside the database, so the count is of real executions, not of rows.
//   npx tsx bench/promotion.ts [--quick] [--n 200] [--max-tasks 32] [--mode async|sync] [--verbose]
// A task lost or run twice under synchronous replication prints FAIL and exits 1.
// --quick: 40 tasks, asynchronous replication only. --verbose keeps each node's log (its path is
// printed). --fast changes nothing: the pair always runs durable. Skipped, with a line, without
// the system's PostgreSQL binaries.
import { spawn, type ChildProcess } from 'node:child_process';
import { copyFileSync, createWriteStream, existsSync, readFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { arg, metric } from './lib.js';
import { Pair, systemBinaries } from '../test/helpers/pair.js';

const quick = process.argv.includes('--quick');
const verbose = process.argv.includes('--verbose');
const n = Number(arg('--n') ?? (quick ? 40 : 200));
const maxTasks = Number(arg('--max-tasks') ?? 32);
const onlyMode = arg('--mode');
if (onlyMode !== undefined && onlyMode !== 'async' && onlyMode !== 'sync') {
  console.error(`pg-tasks: --mode ${onlyMode}: use async or sync`);
  process.exit(1);
}
/** A liveness bound, not a measure: a lease (20 s) plus recovery, twice over. */
const SETTLE_MS = 90_000;
const SCHEMA = 'bench_promotion';

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

interface Execution {
  task: number;
  attempt: number;
  pid: number;
  atMs: number;
}

function executions(file: string): Execution[] {
  if (!existsSync(file)) return [];
  return readFileSync(file, 'utf8')
    .split('\n')
    .filter((line) => line.split(' ').length === 4)
    .map((line) => {
      const [task, attempt, pid, ns] = line.split(' ').map(Number) as [number, number, number, number];
      return { task, attempt, pid, atMs: ns / 1e6 };
    });
}

async function connect(url: string): Promise<pg.Client> {
  const client = new pg.Client({ connectionString: url });
  client.on('error', () => undefined);
  await client.connect();
  return client;
}

function startNode(url: string, log: string): ChildProcess {
  const out = createWriteStream(log);
  const node = spawn(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', '--schema', SCHEMA, 'node', '--worker-id', '1', '--max-tasks', String(maxTasks), '--log-level', 'info'], {
    env: { ...process.env, DATABASE_URL: url },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  node.stdout.pipe(out);
  node.stderr.pipe(out);
  return node;
}

async function stopNode(node: ChildProcess): Promise<void> {
  if (node.exitCode !== null || node.signalCode !== null) return;
  const exited = new Promise((resolve) => node.once('exit', resolve));
  node.kill('SIGTERM');
  const timer = setTimeout(() => node.kill('SIGKILL'), 30_000);
  await exited;
  clearTimeout(timer);
}

async function oneMode(synchronous: boolean): Promise<string> {
  const mode = synchronous ? 'sync' : 'async';
  const pair = new Pair({ synchronous, durable: true });
  let node: ChildProcess | null = null;
  const clients: pg.Client[] = [];
  try {
    await pair.start();
    const log = path.join(pair.dir, 'node.log');
    const file = path.join(pair.dir, 'executions');
    node = startNode(pair.url(pair.both, '?target_session_attrs=read-write'), log);
    const primary = await connect(pair.url(pair.primary));
    clients.push(primary);
    for (let i = 0; ; i++) {
      const { rows } = await primary.query<{ active: boolean }>(`SELECT active FROM ${SCHEMA}.worker WHERE id = 1`).catch(() => ({ rows: [] as Array<{ active: boolean }> }));
      if (rows[0]?.active) break;
      if (i > 1200) throw new Error(`the node did not take its lease within 60 s: see ${log}`);
      await sleep(50);
    }
    const { rows: before } = await primary.query<{ lease_epoch: string }>(`SELECT lease_epoch FROM ${SCHEMA}.worker WHERE id = 1`);
    // Short tasks: a line in the file (the real execution), then 0.3 s of work.
    const script = `echo "$PG_TASKS_TASK_ID $PG_TASKS_ATTEMPT $$ $(date +%s%N)" >> '${file}'; sleep 0.3`;
    const { rows: inserted } = await primary.query<{ id: string }>(
      `INSERT INTO ${SCHEMA}.task (state_id, command) SELECT 'AW', ARRAY['sh', '-c', $1] FROM generate_series(1, $2) RETURNING id`,
      [script, n],
    );
    const ids = new Set(inserted.map((r) => Number(r.id)));
    while (executions(file).length < n / 4) await sleep(5);
    const stoppedAt = Date.now();
    const runningAtStop = executions(file).length;
    await pair.stopPrimary();
    await pair.promote();
    const promotedAt = Date.now();
    await primary.end().catch(() => undefined);
    const survivor = await connect(pair.url(pair.standby));
    clients.push(survivor);

    // Until every task has ended, or the liveness bound.
    let ended = 0;
    while (Date.now() - promotedAt < SETTLE_MS) {
      const { rows } = await survivor.query<{ n: number }>(`SELECT count(*)::int AS n FROM ${SCHEMA}.task WHERE state_id IN ('CS', 'CF', 'CC')`);
      ended = rows[0]!.n;
      if (ended >= ids.size) break;
      await sleep(50);
    }
    const settledMs = Date.now() - promotedAt;
    const runs = executions(file);
    const firstStart = Math.min(...runs.filter((r) => r.atMs > promotedAt).map((r) => r.atMs));
    // Any run's result written after the promotion (one held through the outage counts), and
    // the first run claimed after the promotion that completed.
    const { rows: completed } = await survivor.query<{ any: number | null; claimed: number | null }>(
      `SELECT (extract(epoch FROM min(finished)) * 1000)::float8 AS any,
              (extract(epoch FROM min(finished) FILTER (WHERE started > to_timestamp($1::float8 / 1000))) * 1000)::float8 AS claimed
         FROM ${SCHEMA}.task_run WHERE end_reason = 'completed' AND finished > to_timestamp($1::float8 / 1000)`,
      [promotedAt],
    );
    const firstDone = completed[0]!.any;
    const firstNewDone = completed[0]!.claimed;
    const { rows: states } = await survivor.query<{ id: string; state_id: string; end_reason: string | null }>(`SELECT id, state_id, end_reason FROM ${SCHEMA}.task`);
    const present = new Set(states.map((r) => Number(r.id)));
    const missing = [...ids].filter((id) => !present.has(id)).length;
    const notEnded = states.filter((r) => !['CS', 'CF', 'CC'].includes(r.state_id)).length;
    const failed = states.filter((r) => r.state_id === 'CF' || r.state_id === 'CC');
    const failedText = failed.length ? ` (${[...new Set(failed.map((r) => `${r.state_id} ${r.end_reason}`))].join(', ')})` : '';
    const { rows: lostClaims } = await survivor.query<{ n: number }>(`SELECT count(*)::int AS n FROM ${SCHEMA}.task_run WHERE end_reason = 'lost_claim'`);
    const { rows: after } = await survivor.query<{ lease_epoch: string }>(`SELECT lease_epoch FROM ${SCHEMA}.worker WHERE id = 1`);
    const perTask = new Map<number, Execution[]>();
    for (const r of runs) perTask.set(r.task, [...(perTask.get(r.task) ?? []), r]);
    const twice = [...perTask.values()].filter((list) => list.length > 1);
    const sameAttempt = twice.filter((list) => new Set(list.map((r) => r.attempt)).size < list.length).length;
    const neverRan = [...ids].filter((id) => !perTask.has(id)).length;

    const followMs = Number.isFinite(firstStart) ? firstStart - promotedAt : NaN;
    const doneMs = firstDone !== null ? firstDone - promotedAt : NaN;
    const newDoneMs = firstNewDone !== null ? firstNewDone - promotedAt : NaN;
    if (Number.isFinite(followMs)) metric(`promotion.${mode}.firstStartMs`, followMs);
    if (Number.isFinite(doneMs)) metric(`promotion.${mode}.firstResultMs`, doneMs);
    if (Number.isFinite(newDoneMs)) metric(`promotion.${mode}.firstNewCompletedMs`, newDoneMs);
    metric(`promotion.${mode}.lost`, missing + notEnded + failed.length);
    metric(`promotion.${mode}.duplicated`, twice.length);
    // Synchronous replication promises these: a breach is a bug, and fails the run.
    const breach = synchronous && missing + notEnded + failed.length + twice.length + neverRan > 0;
    let kept = '';
    if (verbose || breach) {
      kept = path.join(os.tmpdir(), `pgt-promotion-${mode}-${process.pid}-node.log`);
      copyFileSync(log, kept);
      console.error(`${mode}: node log kept in ${kept}`);
    }
    if (breach) {
      console.log(`promotion: FAIL: with synchronous replication ${missing} inserts went missing, ${notEnded} tasks did not end, ${failed.length} ended CF/CC, ${twice.length} ran twice, ${neverRan} never ran (node log: ${kept})`);
      process.exitCode = 1;
    }
    const ms = (v: number): string => (Number.isFinite(v) ? `${v.toFixed(0)} ms` : 'never');
    return (
      `promotion, ${mode} replication, ${n} × (a line, sleep 0.3) at ${maxTasks}, primary stopped -m immediate after ${runningAtStop} had started, ` +
      `stop to promoted ${promotedAt - stoppedAt} ms: first process start after the promotion ${ms(followMs)}, first result written ${ms(doneMs)}, first run claimed after it completed ${ms(newDoneMs)}; ` +
      `${ended}/${ids.size} ended within ${(settledMs / 1000).toFixed(1)} s; lost: ${missing} inserts missing, ${notEnded} not ended, ${failed.length} ended CF/CC${failedText}; ` +
      `duplicated: ${twice.length} tasks ran twice (${sameAttempt} within one attempt), ${neverRan} never ran; ` +
      `lost claims queued again ${lostClaims[0]!.n}; lease epoch ${before[0]!.lease_epoch} → ${after[0]?.lease_epoch ?? '?'}`
    );
  } finally {
    if (node) await stopNode(node);
    for (const c of clients) await c.end().catch(() => undefined);
    await pair.stop();
  }
}

const found = systemBinaries();
if ('missing' in found) {
  console.log(`promotion: skipped: ${found.missing}`);
} else {
  const modes = onlyMode ? [onlyMode === 'sync'] : quick ? [false] : [false, true];
  for (const synchronous of modes) console.log(await oneMode(synchronous));
}
