// The cost of task.unique_key on insert (issue 30): single-row inserts, one statement each,
// without a key, with a distinct key each (the partial unique index task_unique_key takes an
// entry), and with a key and ON CONFLICT ... DO NOTHING; rounds interleaved so that a busy
// machine weighs on all three alike. Prints the mean per insert and the ratios to no key.
//   DATABASE_URL=... npx tsx bench/unique-key.ts [--n 2000]
// Makes a database of its own and drops it.
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { migrate } from '../src/db/migrate.js';

const i = process.argv.indexOf('--n');
const n = i > 0 ? Number(process.argv[i + 1]) : 2_000;
const ROUNDS = 4;
const base = process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';
const name = `pgt_bench_unique_${randomBytes(3).toString('hex')}`;
const admin = new pg.Client({ connectionString: base });
await admin.connect();
await admin.query(`CREATE DATABASE ${name}`);
const url = new URL(base);
url.pathname = `/${name}`;
const client = new pg.Client({ connectionString: url.toString() });
await client.connect();
try {
  await migrate(client, 'long_task');
  const INSERT = "INSERT INTO long_task.task (command, state_id, group_id, unique_key) VALUES ('{true}', 'AW', 9, $1)";
  const variants = {
    'no key': (k: number) => client.query(INSERT, [null]).then(() => k),
    'unique key': (k: number) => client.query(INSERT, [`k-${k}`]),
    'unique key, ON CONFLICT DO NOTHING': (k: number) =>
      client.query(`${INSERT} ON CONFLICT (unique_key) WHERE unique_key IS NOT NULL AND state_id IN ('DR', 'AW', 'AE', 'AC') DO NOTHING`, [`c-${k}`]),
  } as const;
  const spent = new Map<string, number>();
  let key = 0;
  for (let round = 0; round < ROUNDS; round++) {
    for (const [label, insert] of Object.entries(variants)) {
      const start = performance.now();
      for (let j = 0; j < n / ROUNDS; j++) await insert(key++);
      spent.set(label, (spent.get(label) ?? 0) + performance.now() - start);
    }
  }
  const none = spent.get('no key')!;
  for (const [label, ms] of spent) {
    console.log(`${label.padEnd(36)} ${((ms / n) * 1000).toFixed(0).padStart(5)} µs/insert  ×${(ms / none).toFixed(2)}`);
  }
} finally {
  await client.end();
  await admin.query(`DROP DATABASE ${name}`);
  await admin.end();
}
