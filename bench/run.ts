// npm run bench [-- --quick]: runs every benchmark, prints one report and, for a full run,
// saves it to bench/RESULTS.md. Each part also runs alone: npx tsx bench/<part>.ts [--quick].
import { execFileSync, spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';

const quick = process.argv.includes('--quick');
const parts = ['throughput', 'start-latency', 'graphile', 'cancel-latency', 'schedule-latency', 'cluster', 'idle-cost', 'backlog'];
const lines: string[] = [];
for (const part of parts) {
  const result = spawnSync(process.execPath, ['--import', 'tsx', path.join(import.meta.dirname, `${part}.ts`), ...(quick ? ['--quick'] : [])], {
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  if (result.status !== 0) {
    console.error(`bench ${part} failed (exit ${result.status ?? result.signal})`);
    process.exit(1);
  }
  lines.push(...result.stdout.trim().split('\n'));
}

const pgVersion = process.env.DATABASE_URL ? 'DATABASE_URL' : 'embedded PostgreSQL';
const header = [
  `# pg-tasks benchmarks${quick ? ' (quick smoke: too small to mean anything)' : ''}`,
  '',
  `- date: ${new Date().toISOString()}`,
  `- machine: ${os.cpus().length} × ${os.cpus()[0]?.model ?? 'cpu'}, ${Math.round(os.totalmem() / 2 ** 30)} GiB, ${os.type()} ${os.release()}`,
  `- node ${process.version}, database: ${pgVersion}, pg-tasks ${execFileSync('git', ['rev-parse', '--short', 'HEAD'], { encoding: 'utf8' }).trim()}`,
  '',
  'Ratios compare figures measured in the same run; absolute numbers move with the load of this shared machine.',
  '',
  'Goals: throughput at 32 ≥ 0.8 × the Node spawn ceiling and ≥ 1.6 × the original pg_tasks (456/s on this machine kind);',
  'start latency p50 ≤ 1.5 ms, p99 ≤ 4 ms; cancel p50 ≤ 1 ms; idle node ≤ 6 statements a minute; 1 M backlog vs 1 k latency ≤ 1.5×.',
  '',
];
const report = [...header, ...lines.map((l) => `- ${l}`)].join('\n');
console.log(report);
if (!quick) writeFileSync(path.join(import.meta.dirname, 'RESULTS.md'), `${report}\n`);
