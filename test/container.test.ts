// The node image (Containerfile; docs/deploy.md, "In a container") and what it relies on: a
// spawn helper built ahead of time (`pg-tasks build-helper`) serves a node that has no C
// compiler. Building and running the image needs podman and the base images, which are pulled
// from a registry: that part runs only when PGTASKS_TEST_CONTAINER=1 (see below).
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { accessSync, constants, readFileSync } from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { after, before, describe, it } from 'node:test';
import { createTestDatabase, type TestDatabase } from './helpers/db.js';
import { ROOT, runCli } from './helpers/cli.js';
import { addTask, startNode, stopAllNodes, tempDir, waitEnded } from './helpers/node.js';
import { until } from './helpers/wait.js';

let db: TestDatabase;

before(async () => {
  db = await createTestDatabase('container');
});

after(async () => {
  await stopAllNodes();
  await db.close();
});

describe('a spawn helper built ahead of time', () => {
  it('is what a node with no C compiler runs its tasks through', async () => {
    const cache = tempDir('helper-cache');
    const built = await runCli(db.url, ['build-helper'], { XDG_CACHE_HOME: cache });
    assert.equal(built.code, 0, built.stderr);
    const binary = built.stdout.trim();
    assert.match(binary, new RegExp(`^${cache}/pg-tasks/spawner-[0-9a-f]{16}$`));
    accessSync(binary, constants.X_OK);
    // Built once: asked again, with no compiler, it answers the same file.
    const again = await runCli(db.url, ['build-helper'], { XDG_CACHE_HOME: cache, CC: '/nonexistent/cc' });
    assert.deepEqual([again.code, again.stdout.trim()], [0, binary]);
    // Without it, no compiler is an error (so the node below did not compile one).
    const none = await runCli(db.url, ['build-helper'], { XDG_CACHE_HOME: tempDir('empty-cache'), CC: '/nonexistent/cc' });
    assert.equal(none.code, 1);
    assert.equal(none.stderr, 'pg-tasks: the spawn helper could not be built: no C compiler (/nonexistent/cc)\n');

    // This process from here on: the prebuilt helper's cache, and no compiler. --spawner
    // helper refuses to start a node without a helper instead of falling back.
    process.env.XDG_CACHE_HOME = cache;
    process.env.CC = '/nonexistent/cc';
    const node = await startNode(db, { spawner: 'helper' });
    assert.ok(node.spawnerPid, 'the node started the helper');
    // The task's shell is the child of its run's supervisor, a fork of the helper.
    const id = await addTask(db, ['sh', '-c', 'cat /proc/$PPID/comm']);
    await waitEnded(db, [id]);
    const { rows } = await db.query<{ state_id: string; output: string }>('SELECT state_id, output FROM long_task.task WHERE id = $1', [id]);
    assert.equal(rows[0]!.state_id, 'CS');
    assert.equal(rows[0]!.output.trim(), path.basename(binary).slice(0, 15));
    await node.shutdown('cancel', 'test');
  });
});

/** The Containerfile's stages: each FROM line and the instructions under it (continuations joined). */
function stages(text: string): Array<{ from: string; lines: string[] }> {
  const joined = text.replace(/\\\n/g, ' ').split('\n').map((l) => l.trim()).filter((l) => l && !l.startsWith('#'));
  const out: Array<{ from: string; lines: string[] }> = [];
  for (const line of joined) {
    if (line.startsWith('FROM ')) out.push({ from: line, lines: [] });
    else out.at(-1)?.lines.push(line);
  }
  return out;
}

describe('Containerfile', () => {
  const text = readFileSync(path.join(ROOT, 'Containerfile'), 'utf8');
  const [build, run, ...more] = stages(text);

  it('builds in one stage and runs in another, without a compiler, as a user', () => {
    assert.equal(more.length, 0);
    assert.match(build!.from, /^FROM \$\{BUILD_IMAGE\} AS build$/);
    assert.match(run!.from, /^FROM \$\{RUN_IMAGE\}$/);
    assert.match(text, /^ARG RUN_IMAGE=docker\.io\/library\/node:20-bookworm-slim$/m);
    // The helper is compiled in the build stage, into the cache the run stage's node reads.
    const cacheEnv = (lines: string[]): string | undefined => lines.find((l) => l.startsWith('ENV ') && l.includes('XDG_CACHE_HOME='))?.match(/XDG_CACHE_HOME=(\S+)/)?.[1];
    assert.equal(cacheEnv(build!.lines), '/opt/pg-tasks/cache');
    assert.equal(cacheEnv(run!.lines), '/opt/pg-tasks/cache');
    assert.ok(build!.lines.some((l) => /^RUN pg-tasks build-helper\b/.test(l)));
    assert.ok(run!.lines.includes('COPY --from=build /opt/pg-tasks/cache /opt/pg-tasks/cache'));
    // Nothing installs a compiler, or anything else, in the run stage.
    assert.ok(!run!.lines.some((l) => /apt-get|apk |gcc|build-essential|npm (ci|install)/.test(l)), run!.lines.join('\n'));
    const user = run!.lines.filter((l) => l.startsWith('USER ')).at(-1);
    assert.equal(user, 'USER pgtasks');
    assert.ok(run!.lines.some((l) => /useradd .*--uid 10001 .*pgtasks$/.test(l)));
  });

  it('checks /healthz on the port its command serves', () => {
    const health = run!.lines.find((l) => l.startsWith('HEALTHCHECK '));
    assert.match(health ?? '', /http:\/\/127\.0\.0\.1:9187\/healthz/);
    assert.ok(run!.lines.includes('CMD ["node", "--metrics-port", "9187", "--metrics-host", "0.0.0.0"]'));
    assert.ok(run!.lines.includes('ENTRYPOINT ["pg-tasks"]'));
  });
});

// Building and running the image. It needs podman and the base images (BUILD_IMAGE and
// RUN_IMAGE, docker.io's node:20-bookworm and -slim by default; PGTASKS_TEST_BUILD_IMAGE and
// PGTASKS_TEST_RUN_IMAGE name others), and it takes minutes: opt in with
// PGTASKS_TEST_CONTAINER=1. PGTASKS_TEST_PODMAN_ARGS: global podman options (e.g.
// "--runtime runc" where crun cannot run), PGTASKS_TEST_PODMAN_RUN_ARGS: options of build and
// run (e.g. "--ulimit nofile=1024:1024" where the default limits may not be set);
// PGTASKS_TEST_IMAGE: an image already built from the Containerfile, to run instead of building.
const podmanArgs = (process.env.PGTASKS_TEST_PODMAN_ARGS ?? '').split(' ').filter(Boolean);
const runArgs = (process.env.PGTASKS_TEST_PODMAN_RUN_ARGS ?? '').split(' ').filter(Boolean);
const optIn = process.env.PGTASKS_TEST_CONTAINER === '1' ? false : 'set PGTASKS_TEST_CONTAINER=1 to build and run the image with podman (it needs the base images)';

async function podman(args: string[], timeoutMs = 60_000): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await promisify(execFile)('podman', [...podmanArgs, ...args], { timeout: timeoutMs, maxBuffer: 64 * 1024 * 1024 });
    return { code: 0, stdout, stderr };
  } catch (error) {
    const e = error as { code?: number | string; stdout?: string; stderr?: string };
    return { code: typeof e.code === 'number' ? e.code : 1, stdout: e.stdout ?? '', stderr: e.stderr ?? String(error) };
  }
}

describe('the image, built and run', { skip: optIn }, () => {
  const tag = `localhost/pg-tasks-test:${process.pid}`;
  const name = `pg-tasks-test-${process.pid}`;

  after(async () => {
    await podman(['rm', '-f', name]);
    await podman(['rmi', '-f', tag]);
  });

  it('builds, runs a task as its user with the prebuilt helper, answers its health check, and stops cleanly', async () => {
    const buildArgs = [
      ...(process.env.PGTASKS_TEST_BUILD_IMAGE ? ['--build-arg', `BUILD_IMAGE=${process.env.PGTASKS_TEST_BUILD_IMAGE}`] : []),
      ...(process.env.PGTASKS_TEST_RUN_IMAGE ? ['--build-arg', `RUN_IMAGE=${process.env.PGTASKS_TEST_RUN_IMAGE}`] : []),
    ];
    // --format docker: the OCI format has no HEALTHCHECK (podman drops it with a warning).
    const image = process.env.PGTASKS_TEST_IMAGE ?? tag;
    if (!process.env.PGTASKS_TEST_IMAGE) {
      const built = await podman(['build', '--format', 'docker', '--network', 'host', ...runArgs, ...buildArgs, '-t', tag, '-f', 'Containerfile', ROOT], 30 * 60_000);
      assert.equal(built.code, 0, built.stderr.slice(-3000));
    }
    const health = await podman(['image', 'inspect', image, '--format', '{{json .HealthCheck}}']);
    assert.match(health.stdout, /9187\/healthz/, health.stderr);

    // No compiler in it.
    const cc = await podman(['run', '--rm', ...runArgs, '--entrypoint', 'sh', image, '-c', 'command -v cc gcc tcc clang; true']);
    assert.deepEqual([cc.code, cc.stdout], [0, '']);

    // The node, on the host's network (for the test database on 127.0.0.1).
    const started = await podman(['run', '-d', '--init', '--name', name, '--network', 'host', ...runArgs, '--env', `DATABASE_URL=${db.url}`, image, 'node', '--worker-id', '7', '--metrics-port', '9187', '--metrics-host', '127.0.0.1']);
    assert.equal(started.code, 0, started.stderr);
    await until(async () => (await podman(['healthcheck', 'run', name])).code === 0, 'the container to be healthy', 120_000);

    const id = await addTask(db, ['sh', '-c', 'id -u; cat /proc/$PPID/comm'], { worker: 7 });
    await waitEnded(db, [id], 60_000);
    const { rows } = await db.query<{ state_id: string; output: string }>('SELECT state_id, output FROM long_task.task WHERE id = $1', [id]);
    assert.equal(rows[0]!.state_id, 'CS', rows[0]!.output);
    const [uid, parent] = rows[0]!.output.trim().split('\n');
    assert.equal(uid, '10001');
    assert.match(parent ?? '', /^spawner-/);

    const stopped = await podman(['stop', '-t', '30', name], 60_000);
    assert.equal(stopped.code, 0, stopped.stderr);
    const exit = await podman(['inspect', name, '--format', '{{.State.ExitCode}}']);
    assert.equal(exit.stdout.trim(), '0', (await podman(['logs', name])).stderr.slice(-3000));
    const worker = await db.query<{ active: boolean }>('SELECT active FROM long_task.worker WHERE id = 7');
    assert.deepEqual(worker.rows, [{ active: false }]);
  });
});
