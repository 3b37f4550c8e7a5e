// The test command: starts one embedded PostgreSQL for the whole run unless DATABASE_URL is
// set, then runs every test file with Node's test runner against it.
import { spawn } from 'node:child_process';
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { startEmbedded, type EmbeddedServer } from '../src/embedded/index.js';

let embedded: EmbeddedServer | null = null;
let dataDir: string | null = null;
if (!process.env.DATABASE_URL) {
  dataDir = mkdtempSync(path.join(os.tmpdir(), 'pg-tasks-test-'));
  embedded = await startEmbedded({ dataDir, fast: true });
  console.log(`tests use an embedded PostgreSQL at 127.0.0.1:${embedded.port}`);
} else {
  console.log(`tests use DATABASE_URL (${new URL(process.env.DATABASE_URL).host})`);
}

// Node 20's runner does not expand globs itself.
const files = process.argv.slice(2);
const all = readdirSync('test').filter((f) => f.endsWith('.test.ts')).sort().map((f) => path.join('test', f));
const child = spawn(
  process.execPath,
  ['--import', 'tsx', '--test', '--test-concurrency=2', ...(files.length ? files : all)],
  { stdio: 'inherit', env: { ...process.env, ...(embedded ? { DATABASE_URL: embedded.url } : {}) } },
);
const code = await new Promise<number>((resolve) => child.on('exit', (c, signal) => resolve(c ?? (signal ? 1 : 0))));
await embedded?.stop();
if (dataDir) rmSync(dataDir, { recursive: true, force: true });
process.exit(code);
