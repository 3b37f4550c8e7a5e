// Shared set-up of the benchmarks: a database, the stamp program, a node process.
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { startEmbedded, type EmbeddedServer } from '../src/embedded/index.js';

export interface Bench {
  dir: string;
  url: string;
  schema: string;
  client: pg.Client;
  /** argv of a program that writes its start time (ns since the epoch) to the file given after it. */
  stamp: string[];
  /** argv of a program that waits for SIGTERM and writes the time it arrived to the file given after it. */
  stampTerm: string[];
  node: ChildProcess;
  close(): Promise<void>;
}

export async function setUpBench(nodeArgs: string[] = []): Promise<Bench> {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'pgt-bench-'));
  let stamp: string[];
  let stampTerm: string[];
  try {
    execFileSync('cc', ['-O2', '-o', path.join(dir, 'stamp'), path.join(import.meta.dirname, 'stamp.c')]);
    execFileSync('cc', ['-O2', '-o', path.join(dir, 'stamp-term'), path.join(import.meta.dirname, 'stamp-term.c')]);
    stamp = [path.join(dir, 'stamp')];
    stampTerm = [path.join(dir, 'stamp-term')];
  } catch {
    // Without a compiler: the same through the shell, a millisecond or two slower.
    stamp = ['sh', '-c', 'date +%s%N > "$0"'];
    stampTerm = ['sh', '-c', 'trap \'date +%s%N > "$0"; exit 0\' TERM; while :; do sleep 1 & wait $!; done'];
  }
  let embedded: EmbeddedServer | null = null;
  if (!process.env.DATABASE_URL) embedded = await startEmbedded({ dataDir: mkdtempSync(path.join(os.tmpdir(), 'pgt-bench-pg-')), fast: true });
  const url = process.env.DATABASE_URL ?? embedded!.url;
  const schema = `bench_${process.pid}`;
  const node = spawn(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', '--schema', schema, 'node', '--worker-id', '1', '--log-level', 'warn', ...nodeArgs], {
    env: { ...process.env, DATABASE_URL: url },
    stdio: ['ignore', 'inherit', 'inherit'],
  });
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  for (let i = 0; ; i++) {
    const r = await client
      .query<{ active: boolean }>(`SELECT active FROM "${schema}".worker WHERE id = 1`)
      .catch(() => ({ rows: [] as Array<{ active: boolean }> }));
    if (r.rows[0]?.active) break;
    if (i > 600) throw new Error('the node did not take its lease within 30 s');
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  return {
    dir,
    url,
    schema,
    client,
    stamp,
    stampTerm,
    node,
    async close() {
      node.kill('SIGTERM');
      await new Promise((resolve) => node.once('exit', resolve));
      await client.query(`DROP SCHEMA "${schema}" CASCADE`);
      await client.end();
      await embedded?.stop();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** Waits for a stamp file and returns its time in ms since the epoch. */
export async function readStamp(file: string): Promise<number> {
  // Polls gently: a busy loop here would take a core from the node and PostgreSQL.
  while (!existsSync(file) || readFileSync(file, 'utf8').length === 0) await new Promise((resolve) => setTimeout(resolve, 2));
  return Number(BigInt(readFileSync(file, 'utf8').trim())) / 1e6;
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
