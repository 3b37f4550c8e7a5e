// Shared set-up of the benchmarks: a database, the stamp program, a node process.
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { startEmbedded, type EmbeddedServer } from '../src/embedded/index.js';
import { createNodeRole } from './statements.js';

/** A database (DATABASE_URL, else an embedded PostgreSQL), a scratch directory and the stamp programs. */
export interface BenchDatabase {
  dir: string;
  url: string;
  client: pg.Client;
  /** argv of a program that writes its start time (ns since the epoch) to the file given after it. */
  stamp: string[];
  /** argv of a program that waits for SIGTERM and writes the time it arrived to the file given after it. */
  stampTerm: string[];
  /** The spawn-ceiling program (bench/spawn-ceiling.c), or null without a C compiler. */
  spawnCeiling: string | null;
  /** Ends the client, stops the embedded server (if any) and removes the scratch directory. */
  close(): Promise<void>;
}

export interface Bench extends BenchDatabase {
  schema: string;
  node: ChildProcess;
  /** The login role the node connects as (setUpBench's statements option), else null. */
  nodeRole: string | null;
}

/**
 * `--fast` (any part, or npm run bench): the embedded server runs with fsync, synchronous_commit
 * and full_page_writes off, as the tests do. No user runs that, and it flatters every figure that
 * waits on a commit, so the default is PostgreSQL's own durable settings and a fast run says so
 * in its report.
 */
export const fast = process.argv.includes('--fast');

/** preload: libraries the embedded server loads at start (ignored with DATABASE_URL). */
export async function setUpDatabase(options: { preload?: string[] } = {}): Promise<BenchDatabase> {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'pgt-bench-'));
  let stamp: string[];
  let stampTerm: string[];
  let spawnCeiling: string | null = null;
  try {
    execFileSync('cc', ['-O2', '-o', path.join(dir, 'stamp'), path.join(import.meta.dirname, 'stamp.c')]);
    execFileSync('cc', ['-O2', '-o', path.join(dir, 'stamp-term'), path.join(import.meta.dirname, 'stamp-term.c')]);
    execFileSync('cc', ['-O2', '-o', path.join(dir, 'spawn-ceiling'), path.join(import.meta.dirname, 'spawn-ceiling.c')]);
    stamp = [path.join(dir, 'stamp')];
    stampTerm = [path.join(dir, 'stamp-term')];
    spawnCeiling = path.join(dir, 'spawn-ceiling');
  } catch {
    // Without a compiler: the same through the shell, a millisecond or two slower.
    stamp = ['sh', '-c', 'date +%s%N > "$0"'];
    stampTerm = ['sh', '-c', 'trap \'date +%s%N > "$0"; exit 0\' TERM; while :; do sleep 1 & wait $!; done'];
  }
  let embedded: EmbeddedServer | null = null;
  // Removed again by close(): a backlog benchmark leaves hundreds of MB in it.
  const pgDataDir = process.env.DATABASE_URL ? null : mkdtempSync(path.join(os.tmpdir(), 'pgt-bench-pg-'));
  if (pgDataDir) embedded = await startEmbedded({ dataDir: pgDataDir, fast, preload: options.preload ?? [] });
  const url = process.env.DATABASE_URL ?? embedded!.url;
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  return {
    dir,
    url,
    client,
    stamp,
    stampTerm,
    spawnCeiling,
    async close() {
      await client.end();
      await embedded?.stop();
      if (pgDataDir) rmSync(pgDataDir, { recursive: true, force: true });
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/**
 * statements: count the node's statements with pg_stat_statements (see bench/statements.ts):
 * the embedded server preloads it, and the node connects as a role of its own. With
 * DATABASE_URL, check statementsUnavailable() first.
 */
export async function setUpBench(
  nodeArgs: string[] = [],
  options: {
    statements?: boolean;
    /** Where the node connects, from the server's URL: its DATABASE_URL and arguments of its own (e.g. a pooler's, with --session-url). */
    nodeUrl?: (url: string) => Promise<{ url: string; args: string[] }>;
  } = {},
): Promise<Bench> {
  const db = await setUpDatabase(options.statements ? { preload: ['pg_stat_statements'] } : {});
  const { url, client } = db;
  const schema = `bench_${process.pid}`;
  // The bench's own polls must not read the whole task table: on a table never analysed (a
  // bulk insert into a new one) the planner takes it for tiny and scans it, every 20 ms.
  await client.query('SET enable_seqscan = off');
  const role = options.statements ? await createNodeRole(client, url) : null;
  // PGTASKS_BENCH_CPU_PROF=DIR: the node writes a V8 CPU profile there when it stops (how the
  // node's share of the CPU was looked into; open it in Chrome's DevTools).
  const profile = process.env.PGTASKS_BENCH_CPU_PROF ? ['--cpu-prof', `--cpu-prof-dir=${process.env.PGTASKS_BENCH_CPU_PROF}`] : [];
  const via = options.nodeUrl ? await options.nodeUrl(role?.url ?? url) : { url: role?.url ?? url, args: [] };
  const node = spawn(process.execPath, [...profile, '--import', 'tsx', 'src/cli/main.ts', '--schema', schema, 'node', '--worker-id', '1', '--log-level', 'warn', ...via.args, ...nodeArgs], {
    env: { ...process.env, DATABASE_URL: via.url },
    stdio: ['ignore', 'inherit', 'inherit'],
  });
  for (let i = 0; ; i++) {
    const r = await client
      .query<{ active: boolean }>(`SELECT active FROM "${schema}".worker WHERE id = 1`)
      .catch(() => ({ rows: [] as Array<{ active: boolean }> }));
    if (r.rows[0]?.active) break;
    if (i > 600) throw new Error('the node did not take its lease within 30 s');
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  return {
    ...db,
    schema,
    node,
    nodeRole: role?.name ?? null,
    async close() {
      node.kill('SIGTERM');
      await new Promise((resolve) => node.once('exit', resolve));
      await client.query(`DROP SCHEMA "${schema}" CASCADE`);
      await role?.drop();
      await db.close();
    },
  };
}

/**
 * Throughput as the node sees it: with the node paused (stop 1), `insert` queues the tasks
 * (default: `count` × /bin/true in group 0); the clock starts at the resume and stops once
 * every task has ended. Returns ends/s; throws unless every task ended CS.
 */
export async function timedRun(bench: Bench, count: number, insert?: () => Promise<unknown>, cpu?: { text?: string }): Promise<number> {
  const s = `"${bench.schema}"`;
  await bench.client.query(`UPDATE ${s}.worker SET stop = 1 WHERE id = 1`);
  await (insert ? insert() : bench.client.query(`INSERT INTO ${s}.task (state_id, command) SELECT 'AW', '{/bin/true}' FROM generate_series(1, $1)`, [count]));
  const started = performance.now();
  const cpuBefore = cpuTimes(bench.node.pid!);
  await bench.client.query(`UPDATE ${s}.worker SET stop = 0 WHERE id = 1`);
  while (await busy(bench)) await new Promise((resolve) => setTimeout(resolve, 20));
  const seconds = (performance.now() - started) / 1000;
  if (cpu) cpu.text = cpuText(cpuBefore, cpuTimes(bench.node.pid!), seconds);
  const rate = count / seconds;
  const { rows } = await bench.client.query<{ n: number }>(`SELECT count(*)::int AS n FROM ${s}.task WHERE state_id <> 'CS'`);
  if (rows[0]!.n > 0) throw new Error(`${rows[0]!.n} tasks did not complete`);
  return rate;
}

/**
 * Whether worker 1 (the bench's node) has work left in group 0: a task waiting for it, or one it
 * runs. Both read partial indexes (task_waiting_any_idx, task_active_worker_idx), so the poll
 * costs the same however many tasks have ended; the bench's client does not seq-scan (see
 * setUpBench). A count over every row, polled every 20 ms, cost more CPU than the node's claims
 * late in a large run, and was most of the "sequential scans of the task table" counted
 * during the bulk pickup.
 */
export async function busy(bench: Bench): Promise<boolean> {
  const s = `"${bench.schema}"`;
  const { rows } = await bench.client.query<{ busy: boolean }>(
    `SELECT EXISTS (SELECT 1 FROM ${s}.task WHERE state_id = 'AW' AND group_id = 0 AND worker_id IS NULL AND run_after IS NULL AND live_worker_id IS NULL AND deps_left = 0)
         OR EXISTS (SELECT 1 FROM ${s}.task WHERE state_id IN ('AE', 'AC') AND worker_id = 1) AS busy`,
  );
  return rows[0]!.busy;
}

/**
 * The machine's limit: bench/spawn-ceiling.c's posix_spawn of /bin/true, `concurrency` at a
 * time, each child in its own process group, with no database; ends/s. Null without a compiler.
 */
export function cSpawnCeiling(db: BenchDatabase, count: number, concurrency: number): number | null {
  if (!db.spawnCeiling) return null;
  return Number(execFileSync(db.spawnCeiling, [String(count), String(concurrency)], { encoding: 'utf8' }).trim());
}

/**
 * `run` (a throughput, ends/s) between two measures of the C posix_spawn ceiling at the same
 * count and concurrency, just before and just after it; the ceiling is their mean (null without
 * a C compiler). `line` says both: `X/s, C posix_spawn ceiling Y/s, ratio R`.
 */
export async function againstCeiling(db: BenchDatabase, count: number, concurrency: number, run: () => Promise<number>): Promise<{ rate: number; ceiling: number | null; line: string }> {
  const before = cSpawnCeiling(db, count, concurrency);
  const rate = await run();
  const after = cSpawnCeiling(db, count, concurrency);
  const ceiling = before === null || after === null ? null : (before + after) / 2;
  const line = `${rate.toFixed(0)}/s, ` + (ceiling === null ? 'C posix_spawn ceiling not measured (no C compiler)' : `C posix_spawn ceiling ${ceiling.toFixed(0)}/s, ratio ${(rate / ceiling).toFixed(2)}`);
  return { rate, ceiling, line };
}

/**
 * Node's limit: child_process.spawn of /bin/true, `concurrency` at a time, in a small process of
 * its own (bench/node-spawn-ceiling.mjs), not in the benchmark's large one; ends/s.
 */
export function nodeSpawnCeiling(count: number, concurrency: number): number {
  const script = path.join(import.meta.dirname, 'node-spawn-ceiling.mjs');
  return Number(execFileSync(process.execPath, [script, String(count), String(concurrency)], { encoding: 'utf8' }).trim());
}

/** How the server keeps commits, from the server itself: `durable (fsync on, …)` or what is off. */
export async function serverDurability(client: pg.Client): Promise<string> {
  const { rows } = await client.query<{ name: string; setting: string }>(
    `SELECT name, setting FROM pg_settings WHERE name IN ('fsync', 'synchronous_commit', 'full_page_writes') ORDER BY name`,
  );
  const { rows: v } = await client.query<{ version: string }>(`SELECT current_setting('server_version') AS version`);
  const settings = rows.map((r) => `${r.name} ${r.setting}`).join(', ');
  const durable = rows.every((r) => r.setting === 'on');
  return `PostgreSQL ${v[0]!.version}, ${durable ? 'durable' : 'NOT durable'} (${settings})`;
}

/** Waits for a stamp file and returns its time in ms since the epoch. */
export async function readStamp(file: string): Promise<number> {
  // Polls gently: a busy loop here would take a core from the node and PostgreSQL.
  while (!existsSync(file) || readFileSync(file, 'utf8').length === 0) await new Promise((resolve) => setTimeout(resolve, 2));
  return Number(BigInt(readFileSync(file, 'utf8').trim())) / 1e6;
}

/** A stamp file's time in ms since the epoch, or null until its program has written it whole. */
export function stampTime(file: string): number | null {
  try {
    const text = readFileSync(file, 'utf8');
    return text.endsWith('\n') ? Number(BigInt(text.trim())) / 1e6 : null;
  } catch {
    return null;
  }
}

/** The value after a command-line option of a bench part (`--n 300`), if given. */
export function arg(name: string): string | undefined {
  const i = process.argv.indexOf(name);
  return i > 0 ? process.argv[i + 1] : undefined;
}

/**
 * A figure for the goals table of bench/run.ts, on a line of its own that run.ts takes out of
 * the report. Names: throughput.<concurrency>.rate, start.p50, …
 */
export function metric(name: string, value: number): void {
  console.log(`metric ${JSON.stringify({ name, value })}`);
}

/** Wall clock with sub-millisecond precision, comparable with the child's CLOCK_REALTIME. */
export function nowMs(): number {
  return performance.timeOrigin + performance.now();
}

export function percentiles(values: number[]): { p50: string; p95: string; p99: string } {
  const sorted = [...values].sort((a, b) => a - b);
  const pct = (p: number): string => sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!.toFixed(2);
  return { p50: pct(50), p95: pct(95), p99: pct(99) };
}

/** `from the send p50 a, p95 b, p99 c ms; from the acknowledgement p50 …` */
export function latencyText(figures: { send: number[]; ack: number[] }): string {
  const send = percentiles(figures.send);
  const ack = percentiles(figures.ack);
  return `from the send p50 ${send.p50}, p95 ${send.p95}, p99 ${send.p99} ms; from the acknowledgement p50 ${ack.p50}, p95 ${ack.p95}, p99 ${ack.p99} ms`;
}

/** CPU time (ms) used so far, by who: the node process, its helper processes (spawn helper, reaper), the tasks they reaped, and every postgres process. */
export interface CpuTimes {
  node: number;
  helpers: number;
  tasks: number;
  postgres: number;
}

/**
 * Reads /proc for the CPU time of the node (pid) and its descendants, and of every process
 * named postgres (embedded or not: an idle server adds next to nothing). Two readings apart
 * give who used the 2 cores meanwhile. Linux only; zeros elsewhere.
 */
export function cpuTimes(nodePid: number): CpuTimes {
  const ticks = 100; // USER_HZ: 100 on every Linux this runs on
  const stats = new Map<number, { comm: string; ppid: number; own: number; reaped: number }>();
  let entries: string[];
  try {
    entries = readdirSync('/proc').filter((e) => /^\d+$/.test(e));
  } catch {
    return { node: 0, helpers: 0, tasks: 0, postgres: 0 };
  }
  for (const entry of entries) {
    try {
      const text = readFileSync(`/proc/${entry}/stat`, 'utf8');
      const close = text.lastIndexOf(')');
      const comm = text.slice(text.indexOf('(') + 1, close);
      const f = text.slice(close + 2).split(' ');
      // After the comm: state ppid … utime(12) stime(13) cutime(14) cstime(15), 0-based from state.
      stats.set(Number(entry), { comm, ppid: Number(f[1]), own: Number(f[11]) + Number(f[12]), reaped: Number(f[13]) + Number(f[14]) });
    } catch {
      // The process ended while we read.
    }
  }
  const ms = (t: number): number => (t * 1000) / ticks;
  const times: CpuTimes = { node: 0, helpers: 0, tasks: 0, postgres: 0 };
  const inTree = (pid: number): boolean => {
    for (let p = pid, depth = 0; p > 1 && depth < 20; depth++) {
      if (p === nodePid) return true;
      p = stats.get(p)?.ppid ?? 0;
    }
    return false;
  };
  for (const [pid, s] of stats) {
    if (s.comm === 'postgres') times.postgres += ms(s.own + s.reaped);
    else if (pid === nodePid) times.node += ms(s.own);
    else if (inTree(pid)) {
      times.helpers += ms(s.own);
      times.tasks += ms(s.reaped);
    }
  }
  return times;
}

/** `CPU: node 41%, helpers 9%, tasks 30%, PostgreSQL 95% (of 200%: 2 cores)` between two readings over `seconds`. */
export function cpuText(before: CpuTimes, after: CpuTimes, seconds: number): string {
  const pct = (key: keyof CpuTimes): string => `${(((after[key] - before[key]) / 1000 / seconds) * 100).toFixed(0)}%`;
  return `CPU: node ${pct('node')}, its helpers ${pct('helpers')}, the tasks ${pct('tasks')}, PostgreSQL ${pct('postgres')} (of ${os.cpus().length * 100}%)`;
}
