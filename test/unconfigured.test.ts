// Nothing says where to connect (no DATABASE_URL, no PG* variable, USER empty): pg tries
// localhost:5432 with an empty user name. The CLI and the library say what to set, whether
// a server answers there ("no PostgreSQL user name specified in startup packet") or not.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, describe, it } from 'node:test';
import { ROOT, runCli } from './helpers/cli.js';

const NOTHING: Record<string, string | undefined> = {
  DATABASE_URL: undefined, PGTASKS_SESSION_URL: undefined, PGHOST: undefined, PGPORT: undefined,
  PGUSER: undefined, PGDATABASE: undefined, PGPASSWORD: undefined, USER: '',
};

const scratch = mkdtempSync(path.join(os.tmpdir(), 'pgt-unconfigured-'));
after(() => rmSync(scratch, { recursive: true, force: true }));

describe('nothing configured', () => {
  it('the CLI says to set DATABASE_URL, in one line', async () => {
    for (const args of [['ls'], ['workers']]) {
      const r = await runCli('', args, NOTHING);
      assert.equal(r.code, 1, r.stderr);
      assert.equal(r.stdout, '');
      const lines = r.stderr.trimEnd().split('\n');
      assert.equal(lines.length, 1, r.stderr);
      assert.match(lines[0]!, /^pg-tasks: cannot (connect to|reach) PostgreSQL.*[Ss]et DATABASE_URL/);
    }
  });

  it('the library rejects with an Error whose message says to set DATABASE_URL, the driver\'s error as its cause', async () => {
    const script = path.join(scratch, 'client.mts');
    writeFileSync(script, `
      import { TaskClient } from ${JSON.stringify(path.join(ROOT, 'src/index.ts'))};
      const client = new TaskClient();
      try {
        await client.list({});
        console.log('connected');
      } catch (error) {
        console.log(JSON.stringify({ name: error.name, message: error.message, cause: error.cause instanceof Error }));
      } finally {
        await client.close();
      }
    `);
    const env: NodeJS.ProcessEnv = { ...process.env };
    for (const [key, value] of Object.entries(NOTHING)) {
      if (value === undefined) delete env[key];
      else env[key] = value;
    }
    delete env.NODE_TEST_CONTEXT;
    const child = spawn(process.execPath, ['--import', 'tsx', script], { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    child.stdout.setEncoding('utf8').on('data', (s: string) => (out += s));
    const code = await new Promise<number | null>((resolve) => child.on('close', resolve));
    assert.equal(code, 0, out);
    const seen = JSON.parse(out) as { name: string; message: string; cause: boolean };
    assert.equal(seen.name, 'Error');
    assert.match(seen.message, /\(nothing configured: set DATABASE_URL=postgres:\/\/user:password@host:5432\/database, or the PG\* variables\)$/);
    assert.equal(seen.cause, true);
  });
});
