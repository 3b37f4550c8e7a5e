// Start latency on an idle node: from the commit of an AW row (client clock) to the child
// process running (it stamps its own start time). Prints p50/p95/p99.
//   npx tsx bench/start-latency.ts [--quick] [--n 300]
// Uses DATABASE_URL, or an embedded PostgreSQL. The node runs as a separate process, as in
// production. The stamp program is compiled with cc when available, else a shell fallback.
import { execFileSync, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { startEmbedded } from '../src/embedded/index.js';

const quick = process.argv.includes('--quick');
const nArg = process.argv.indexOf('--n');
const n = nArg > 0 ? Number(process.argv[nArg + 1]) : quick ? 20 : 300;
const dir = mkdtempSync(path.join(os.tmpdir(), 'pgt-bench-'));

let stamp: string[];
try {
  execFileSync('cc', ['-O2', '-o', path.join(dir, 'stamp'), path.join(import.meta.dirname, 'stamp.c')]);
  stamp = [path.join(dir, 'stamp')];
} catch {
  stamp = ['sh', '-c', 'date +%s%N > "$0"'];
}

const embedded = process.env.DATABASE_URL ? null : await startEmbedded({ dataDir: mkdtempSync(path.join(os.tmpdir(), 'pgt-bench-pg-')), fast: true });
const url = process.env.DATABASE_URL ?? embedded!.url;
const schema = `bench_${process.pid}`;
const node = spawn(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', '--schema', schema, 'node', '--worker-id', '1', '--max-tasks', '8', '--log-level', 'warn'], {
  env: { ...process.env, DATABASE_URL: url },
  stdio: ['ignore', 'inherit', 'inherit'],
});
const client = new pg.Client({ connectionString: url });
await client.connect();
// Wait until the node holds its lease.
for (let i = 0; ; i++) {
  const r = await client
    .query<{ active: boolean }>(`SELECT active FROM "${schema}".worker WHERE id = 1`)
    .catch(() => ({ rows: [] as Array<{ active: boolean }> }));
  if (r.rows[0]?.active) break;
  if (i > 600) throw new Error('node did not start');
  await new Promise((resolve) => setTimeout(resolve, 50));
}

const latencies: number[] = [];
for (let i = 0; i < n; i++) {
  const file = path.join(dir, `t${i}`);
  await client.query('BEGIN');
  await client.query(`INSERT INTO "${schema}".task (state_id, command) VALUES ('AW', $1)`, [[...stamp, file]]);
  await client.query('COMMIT');
  // Wall clock with sub-millisecond precision, comparable with the child's CLOCK_REALTIME.
  const committedMs = performance.timeOrigin + performance.now();
  // Polls gently: a busy loop here would take a core from the node and PostgreSQL.
  while (!existsSync(file) || readFileSync(file, 'utf8').length === 0) await new Promise((resolve) => setTimeout(resolve, 2));
  const started = BigInt(readFileSync(file, 'utf8').trim());
  latencies.push(Number(started) / 1e6 - committedMs);
  await new Promise((resolve) => setTimeout(resolve, 20)); // idle between tasks
}
latencies.sort((a, b) => a - b);
const pct = (p: number): string => latencies[Math.min(latencies.length - 1, Math.floor((p / 100) * latencies.length))]!.toFixed(2);
console.log(`start latency, ${n} sequential tasks on an idle node: p50 ${pct(50)} ms, p95 ${pct(95)} ms, p99 ${pct(99)} ms`);

node.kill('SIGTERM');
await new Promise((resolve) => node.once('exit', resolve));
await client.query(`DROP SCHEMA "${schema}" CASCADE`);
await client.end();
await embedded?.stop();
rmSync(dir, { recursive: true, force: true });
