// The embedded PostgreSQL's start: what a user meets on the first `npm start`. Real servers,
// real data directories, real ports; each failure must be one line that names the fix.
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { chmodSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { after, describe, it } from 'node:test';
import pg from 'pg';
import { EmbeddedError, startEmbedded, type EmbeddedServer } from '../src/embedded/index.js';
import { isProcessAlive, isProcessGroupAlive } from '../src/node/process/process-group.js';
import { runCli } from './helpers/cli.js';
import { tempDir } from './helpers/node.js';
import { until } from './helpers/wait.js';

const servers: EmbeddedServer[] = [];
const dirs: string[] = [];
after(async () => {
  await Promise.all(servers.map((s) => s.stop()));
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
});

/** A new directory the server's user may enter (as root, PostgreSQL runs as "postgres"). */
function scratch(label: string): string {
  const dir = tempDir(label);
  chmodSync(dir, 0o755);
  dirs.push(dir);
  return dir;
}

async function start(options: Parameters<typeof startEmbedded>[0]): Promise<EmbeddedServer> {
  const server = await startEmbedded({ fast: true, ...options });
  servers.push(server);
  return server;
}

async function query(url: string, sql: string): Promise<pg.QueryResultRow[]> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    return (await client.query<pg.QueryResultRow>(sql)).rows;
  } finally {
    await client.end();
  }
}

/** A one-line EmbeddedError whose message matches. */
async function refused(promise: Promise<unknown>, pattern: RegExp): Promise<string> {
  let message = '';
  await assert.rejects(promise, (error: unknown) => {
    assert.ok(error instanceof EmbeddedError, `expected an EmbeddedError, got ${String(error)}`);
    message = error.message;
    return true;
  });
  assert.match(message, pattern);
  assert.doesNotMatch(message, /\n/, 'one line');
  return message;
}

const isRoot = process.getuid?.() === 0;

describe('the embedded PostgreSQL', () => {
  it('refuses a second start on a running data directory, naming its pid and port; the first runs on', async () => {
    const dataDir = path.join(scratch('embedded-twice'), 'data');
    const first = await start({ dataDir });
    const postmasterPid = Number(readFileSync(path.join(first.dataDir, 'postmaster.pid'), 'utf8').split('\n')[0]);
    await refused(start({ dataDir }), new RegExp(`already runs \\(postgres pid ${postmasterPid}, port ${first.port}\\).*stop that one first`));
    assert.deepEqual(await query(first.url, 'SELECT 1 AS one'), [{ one: 1 }]);
  });

  it('takes a free port when its port is taken and says so; with the port required, fails naming the port and its holder', async () => {
    const holder = net.createServer();
    await new Promise<void>((resolve) => holder.listen(0, '127.0.0.1', resolve));
    const taken = (holder.address() as net.AddressInfo).port;
    try {
      await refused(start({ dataDir: path.join(scratch('embedded-port'), 'data'), port: taken }), new RegExp(`^port ${taken} on 127.0.0.1 is in use by pid ${process.pid} .*choose another --port`));
      const server = await start({ dataDir: path.join(scratch('embedded-port'), 'data'), port: taken, anyPort: true });
      assert.notEqual(server.port, taken);
      assert.ok(server.notes.some((note) => note.includes(`port ${taken} on 127.0.0.1 is in use`) && note.includes(`port ${server.port} instead`)), server.notes.join(' | '));
      assert.deepEqual(await query(server.url, 'SELECT 1 AS one'), [{ one: 1 }]);
    } finally {
      holder.close();
    }
  });

  it('starts again on a data directory whose server was SIGKILLed, keeping its data, and on a lock file whose pid is now another program', async () => {
    const dataDir = path.join(scratch('embedded-killed'), 'data');
    let server = await start({ dataDir, fast: false });
    await query(server.url, 'CREATE TABLE kept AS SELECT 42 AS answer');
    const lockFile = path.join(dataDir, 'postmaster.pid');
    const postmaster = Number(readFileSync(lockFile, 'utf8').split('\n')[0]);
    process.kill(postmaster, 'SIGKILL');
    assert.match(await server.died, /stopped unexpectedly/);
    await server.stop();
    assert.ok(readFileSync(lockFile, 'utf8'), 'a SIGKILLed server leaves its lock file');
    server = await start({ dataDir, fast: false });
    assert.deepEqual(await query(server.url, 'SELECT answer FROM kept'), [{ answer: 42 }]);
    await server.stop();

    // A lock file naming a live pid that is not PostgreSQL: pids are reused after a reboot.
    const sleeper = spawn('sleep', ['60'], { stdio: 'ignore' });
    try {
      // The lock file's first lines: pid, data directory, start time, port.
      writeFileSync(lockFile, [String(sleeper.pid), dataDir, '0', String(server.port), ''].join('\n'));
      server = await start({ dataDir, fast: false });
      assert.deepEqual(await query(server.url, 'SELECT answer FROM kept'), [{ answer: 42 }]);
    } finally {
      sleeper.kill('SIGKILL');
    }
  });

  it('refuses a directory that holds something else, and one that cannot be created, in one line each', async () => {
    const foreign = path.join(scratch('embedded-foreign'), 'data');
    mkdirSync(foreign);
    writeFileSync(path.join(foreign, 'notes.txt'), 'mine');
    await refused(start({ dataDir: foreign }), /is not empty and holds no PostgreSQL data: move it aside, or choose another --data-dir$/);
    assert.equal(readFileSync(path.join(foreign, 'notes.txt'), 'utf8'), 'mine');

    const file = path.join(scratch('embedded-file'), 'file');
    writeFileSync(file, '');
    await refused(start({ dataDir: path.join(file, 'data') }), /^could not create .*: a file is in the way .*; choose another --data-dir$/);
  });

  it('as root, runs PostgreSQL as "postgres" and, for a default data directory it cannot reach, keeps the data under PGTASKS_HOME', { skip: !isRoot && 'needs root' }, async () => {
    const closed = scratch('embedded-closed');
    chmodSync(closed, 0o700);
    const home = scratch('embedded-home');
    const dataDir = path.join(closed, 'project', '.pg-tasks', 'data');
    await refused(start({ dataDir }), /runs as user "postgres", who cannot enter .*embedded-closed.*: choose a --data-dir that user can reach/);
    const previous = process.env.PGTASKS_HOME;
    process.env.PGTASKS_HOME = home;
    try {
      const server = await start({ dataDir, relocate: true });
      assert.ok(server.dataDir.startsWith(path.join(home, 'data', 'project-')), server.dataDir);
      assert.match(server.notes.join(' '), /the data lives in .* instead/);
      assert.deepEqual(await query(server.url, 'SELECT current_user AS u'), [{ u: 'postgres' }]);
      const owner = execFileSync('stat', ['-c', '%U %a', server.dataDir]).toString().trim();
      assert.equal(owner, 'postgres 700');
    } finally {
      if (previous === undefined) delete process.env.PGTASKS_HOME;
      else process.env.PGTASKS_HOME = previous;
    }
  });

  it('a full disk is one line that says so', { skip: !isRoot && 'needs root to mount a small tmpfs' }, async (t) => {
    const mountPoint = scratch('embedded-full');
    try {
      execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=4m,mode=755', 'tmpfs', mountPoint], { stdio: 'ignore' });
    } catch {
      t.skip('mount is not allowed here');
      return;
    }
    try {
      await refused(start({ dataDir: path.join(mountPoint, 'data') }), /no space left on the device.*free some space, or choose another --data-dir/);
    } finally {
      execFileSync('umount', [mountPoint]);
    }
  });
});

describe('pg-tasks start', () => {
  it('prints one line and exits 1 when the embedded start fails, never a stack', async () => {
    const file = path.join(scratch('start-file'), 'file');
    writeFileSync(file, '');
    const result = await runCli('', ['start', '--data-dir', path.join(file, 'data')], { DATABASE_URL: undefined });
    assert.equal(result.code, 1);
    const lines = result.stderr.trim().split('\n');
    assert.equal(lines.length, 1, result.stderr);
    assert.match(lines[0]!, /^pg-tasks: could not create .*: a file is in the way .*; choose another --data-dir$/);
    assert.doesNotMatch(result.stdout + result.stderr, /\n\s+at /);
  });

  it('runs a task added with the psql line it prints, and stops on Ctrl-C leaving no process', async () => {
    const dataDir = path.join(scratch('start-run'), 'data');
    const child = spawn(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', 'start', '--data-dir', dataDir, '--port', '0'], {
      cwd: path.resolve(import.meta.dirname, '..'),
      env: { ...process.env, DATABASE_URL: '', PGTASKS_LOG_FORMAT: 'pretty' },
      stdio: ['ignore', 'pipe', 'pipe'],
      detached: true,
    });
    let out = '';
    child.stdout.setEncoding('utf8').on('data', (s: string) => (out += s));
    child.stderr.setEncoding('utf8').on('data', (s: string) => (out += s));
    const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
    try {
      const url = await until(() => /Connect: +psql "([^"]+)"/.exec(out)?.[1], 'the printed psql line', 60_000);
      const [row] = await query(url, "INSERT INTO long_task.task (group_id, state_id, priority, command) VALUES (0, 'AW', 0, '{echo,hello}') RETURNING id");
      await until(async () => (await query(url, `SELECT state_id FROM long_task.task WHERE id = ${Number(row!.id)}`))[0]?.state_id === 'CS', 'the task to complete');
      await until(() => /INFO: task ended {2}.*task=\d+ attempt=1 state=CS endReason=completed exitCode=0/.test(out), 'a readable "task ended" line');
      const postmaster = Number(readFileSync(path.join(dataDir, 'postmaster.pid'), 'utf8').split('\n')[0]);
      process.kill(-child.pid!, 'SIGINT');
      assert.equal(await exited, 0, out);
      await until(() => !isProcessAlive(postmaster), 'PostgreSQL to stop');
      assert.equal(isProcessGroupAlive(child.pid!), false, 'nothing left in its process group');
    } finally {
      if (child.exitCode === null) process.kill(-child.pid!, 'SIGKILL');
    }
  });
});

