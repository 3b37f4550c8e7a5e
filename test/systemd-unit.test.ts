// `pg-tasks systemd-unit` (docs/deploy.md): the unit it prints, through the CLI as a user runs
// it, and systemd's own check of it (systemd-analyze verify) where this host has one.
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Writable } from 'node:stream';
import { after, describe, it } from 'node:test';
import { run } from '../src/cli/main.js';
import { nodeWords, systemdQuote } from '../src/cli/commands/systemd-unit.js';
import { ROOT, runCli } from './helpers/cli.js';

// The command reads no database: an unreachable one proves it.
const NO_DATABASE = 'postgres://postgres@127.0.0.1:1/x';
const EXEC = path.join(ROOT, 'bin', 'pg-tasks.js');
// As ExecStart names it: quoted where the checkout's path has a space (CI clones into one).
const EXEC_WORD = systemdQuote(EXEC);
const dir = mkdtempSync(path.join(os.tmpdir(), 'pg-tasks-unit-'));

after(() => rmSync(dir, { recursive: true, force: true }));

/** The CLI in this process (a child each time costs seconds here): code and what it wrote. */
async function inProcess(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  const out = { stdout: '', stderr: '' };
  const sink = (key: 'stdout' | 'stderr'): Writable =>
    new Writable({
      write(chunk: Buffer, _encoding, done) {
        out[key] += chunk.toString();
        done();
      },
    });
  const code = await run(args, { stdout: sink('stdout'), stderr: sink('stderr') });
  return { code, ...out };
}

async function unit(args: string[]): Promise<string> {
  const result = await inProcess(['systemd-unit', '--exec', EXEC, ...args]);
  assert.equal(result.stderr, '');
  assert.equal(result.code, 0);
  return result.stdout;
}

/** The value of each line `key=` (in order), e.g. values(text, 'TimeoutStopSec'). */
function values(text: string, key: string): string[] {
  return text.split('\n').filter((l) => l.startsWith(`${key}=`)).map((l) => l.slice(key.length + 1));
}

describe('systemd-unit', () => {
  it('runs pg-tasks node with the node options as given, quoted for systemd', async () => {
    // As a user runs it: a child process (Node 20 takes --env-file for its own anywhere in argv).
    const child = await runCli(NO_DATABASE, ['systemd-unit', '--exec', EXEC, '--max-tasks', '4', '--name', 'node a', '--user', 'svc', '--kill-grace', '20s', '--env', 'NOTE=50% of $HOME "x"', '--environment-file=/etc/x.env', '--pass-env', 'LANG', '3']);
    assert.equal(child.stderr, '');
    assert.equal(child.code, 0);
    const text = child.stdout;
    // The unit's own options (--exec, --user, --environment-file) are not the node's.
    assert.deepEqual(values(text, 'ExecStart'), [
      `${EXEC_WORD} node --max-tasks 4 --name "node a" --kill-grace 20s --env "NOTE=50%% of $$HOME \\"x\\"" --pass-env LANG 3`,
    ]);
    assert.deepEqual(values(text, 'User'), ['svc']);
    assert.deepEqual(values(text, 'EnvironmentFile'), ['/etc/x.env']);
    assert.deepEqual(values(text, 'Description'), ['pg-tasks node (worker 3)']);
    assert.deepEqual(values(text, 'KillMode'), ['mixed']);
    assert.deepEqual(values(text, 'Restart'), ['on-failure']);
    assert.deepEqual(values(text, 'OOMPolicy'), ['continue']);
    // Hardening that would change what tasks may do is left out unless asked for.
    for (const key of ['ProtectSystem', 'ProtectHome', 'PrivateTmp', 'NoNewPrivileges']) assert.deepEqual(values(text, key), [], key);
  });

  it('puts a global --schema before node', async () => {
    const result = await runCli(NO_DATABASE, ['--schema', 'jobs', 'systemd-unit', '--exec', EXEC, '--lease', '30s']);
    assert.equal(result.code, 0, result.stderr);
    assert.deepEqual(values(result.stdout, 'ExecStart'), [`${EXEC_WORD} --schema jobs node --lease 30s`]);
    const after = await unit(['--schema', 'jobs', '--lease', '30s']);
    assert.deepEqual(values(after, 'ExecStart'), [`${EXEC_WORD} --schema jobs node --lease 30s`]);
  });

  it('quotes words as systemd splits them', () => {
    assert.equal(systemdQuote('/usr/local/bin/pg-tasks'), '/usr/local/bin/pg-tasks');
    assert.equal(systemdQuote('a b'), '"a b"');
    assert.equal(systemdQuote(''), '""');
    assert.equal(systemdQuote('it\'s'), '"it\'s"');
    assert.equal(systemdQuote('back\\slash'), '"back\\\\slash"');
    assert.equal(systemdQuote('line\nbreak\ttab'), '"line\\nbreak\\ttab"');
    assert.equal(systemdQuote('100%'), '100%%');
    assert.equal(systemdQuote('$PATH'), '"$$PATH"');
    assert.equal(systemdQuote(';'), '\\;');
    assert.deepEqual(nodeWords(['systemd-unit', '--schema', 'x', '--user', 'u', '--private-tmp', '--max-tasks', '2', '--', '--user']), ['--max-tasks', '2', '--user']);
  });

  it('gives a stop the kill grace, the time to write results and a margin', async () => {
    // 5s grace (the default) + 15s results + 10s margin.
    assert.deepEqual(values(await unit([]), 'TimeoutStopSec'), ['30s']);
    assert.deepEqual(values(await unit(['--kill-grace', '20s']), 'TimeoutStopSec'), ['45s']);
    // Rounded up: 1.5s + 25s.
    assert.deepEqual(values(await unit(['--kill-grace', '1500ms']), 'TimeoutStopSec'), ['27s']);
  });

  it('gives a drain its --drain-timeout, then a second SIGTERM that cancels', async () => {
    const drain = await unit(['--shutdown', 'drain']);
    assert.deepEqual(values(drain, 'TimeoutStopSec'), ['3600s']);
    assert.deepEqual(values(drain, 'TimeoutStopFailureMode'), ['abort']);
    assert.deepEqual(values(drain, 'WatchdogSignal'), ['SIGTERM']);
    assert.deepEqual(values(drain, 'TimeoutAbortSec'), ['30s']);
    const short = await unit(['--shutdown', 'drain', '--drain-timeout', '10m', '--kill-grace', '10s']);
    assert.deepEqual([values(short, 'TimeoutStopSec'), values(short, 'TimeoutAbortSec')], [['600s'], ['35s']]);
    const forever = await unit(['--shutdown=drain', '--drain-timeout', 'infinity']);
    assert.deepEqual([values(forever, 'TimeoutStopSec'), values(forever, 'TimeoutStopFailureMode')], [['infinity'], []]);
    assert.match(values(forever, 'ExecStart')[0]!, / node --shutdown=drain$/);
  });

  it('delegates its cgroup only where runs may get cgroups', async () => {
    assert.deepEqual(values(await unit([]), 'Delegate'), ['yes']);
    assert.deepEqual(values(await unit(['--containment', 'cgroup']), 'Delegate'), ['yes']);
    assert.deepEqual(values(await unit(['--containment', 'group']), 'Delegate'), []);
    assert.deepEqual(values(await unit(['--containment', 'supervisor']), 'Delegate'), []);
    assert.deepEqual(values(await unit(['--spawner', 'node']), 'Delegate'), []);
    // The shell's PGTASKS_SPAWNER is not the service's environment (EnvironmentFile= is).
    const before = process.env.PGTASKS_SPAWNER;
    process.env.PGTASKS_SPAWNER = 'node';
    try {
      assert.deepEqual(values(await unit([]), 'Delegate'), ['yes']);
    } finally {
      if (before === undefined) delete process.env.PGTASKS_SPAWNER;
      else process.env.PGTASKS_SPAWNER = before;
    }
  });

  it('runs as root for run_as, and adds the hardening asked for', async () => {
    const root = await unit(['--allow-run-as', 'alice']);
    assert.deepEqual(values(root, 'User'), []);
    assert.deepEqual(values(await unit([]), 'User'), ['pgtasks']);
    const hard = await unit(['--protect-system', 'strict', '--protect-home', 'read-only', '--private-tmp', '--no-new-privileges']);
    assert.deepEqual(
      ['ProtectSystem', 'ProtectHome', 'PrivateTmp', 'NoNewPrivileges'].map((k) => values(hard, k)),
      [['strict'], ['read-only'], ['yes'], ['yes']],
    );
    assert.deepEqual(values(hard, 'ExecStart'), [`${EXEC_WORD} node`]);
  });

  it('refuses what cannot work, in one line', async () => {
    const cases: Array<[string[], RegExp]> = [
      [['--allow-run-as', 'alice', '--user', 'bob'], /^pg-tasks: --allow-run-as needs the node to run as root: drop --user bob$/],
      [['--drain-timeout', '0'], /--drain-timeout must be at least 1s, or infinity/],
      [['--shutdown', 'later'], /^pg-tasks: --shutdown: "later" is not one of cancel, drain$/],
      [['--protect-home', 'maybe'], /^pg-tasks: --protect-home: "maybe" is not one of /],
    ];
    for (const [args, message] of cases) {
      const result = await inProcess(['systemd-unit', ...args]);
      assert.notEqual(result.code, 0, args.join(' '));
      assert.equal(result.stdout, '');
      assert.match(result.stderr.trimEnd(), message);
      assert.equal(result.stderr.trimEnd().split('\n').length, 1, 'one line');
    }
  });
});

const analyze = spawnSync('systemd-analyze', ['--version'], { encoding: 'utf8' });
const noAnalyze = analyze.status === 0 ? false : 'systemd-analyze is not installed here: the units are not verified';

describe('systemd-analyze verify', { skip: noAnalyze }, () => {
  const variants: string[][] = [
    [],
    ['--shutdown', 'drain', '--name', 'a b', '--env', 'X=$y %z'],
    ['--shutdown', 'drain', '--drain-timeout', 'infinity', '--allow-run-as', 'alice'],
    ['--containment', 'group', '--protect-system', 'strict', '--protect-home', 'tmpfs', '--private-tmp', '--no-new-privileges'],
  ];
  for (const args of variants) {
    it(`accepts the unit of: ${args.join(' ') || '(no options)'}`, async () => {
      const file = path.join(dir, 'pg-tasks-node.service');
      writeFileSync(file, await unit(args));
      // Warnings (an unknown key, a value it ignores) leave the status 0: none is accepted.
      const result = spawnSync('systemd-analyze', ['verify', file], { encoding: 'utf8' });
      assert.equal(result.stderr, '');
      assert.equal(result.status, 0);
    });
  }

  it('would catch a bad unit (the check can fail)', () => {
    const file = path.join(dir, 'bad.service');
    writeFileSync(file, '[Service]\nExecStart=/bin/true\nKillMode=gently\n');
    assert.match(execFileSync('sh', ['-c', `systemd-analyze verify ${file} 2>&1 || true`], { encoding: 'utf8' }), /kill mode/);
  });
});
