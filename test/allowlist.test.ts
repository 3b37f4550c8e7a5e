// What may run: task_allowlist, enforced by the trigger when a task is written and by the node
// before it spawns. The programs that would do harm here create a file: a refused task's file
// never appears, an allowed one's does. Each test uses groups and workers of its own.
import assert from 'node:assert/strict';
import { chmodSync, existsSync, mkdirSync, readdirSync, writeFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import { runCli } from './helpers/cli.js';
import { loadStatements } from '../src/sql/queries/index.js';
import { recoverWorker } from '../src/node/recovery/recovery.js';
import { addTask, getTask, markClaimed, startNode, tempDir, testLogger, useTestDatabase, waitEnded } from './helpers/node.js';
import { until } from './helpers/wait.js';

const db = useTestDatabase('allowlist');

async function allowlistGroup(group: number): Promise<void> {
  await db.query("INSERT INTO long_task.task_group (id, commands) VALUES ($1, 'allowlist') ON CONFLICT (id) DO UPDATE SET commands = 'allowlist'", [group]);
}

async function allow(group: number, program: string, argsPattern: string | null = null): Promise<void> {
  await db.query('INSERT INTO long_task.task_allowlist (group_id, program, args_pattern) VALUES ($1, $2, $3)', [group, program, argsPattern]);
}

async function expectRefused(write: Promise<unknown>, message: RegExp): Promise<void> {
  await assert.rejects(write, (error: Error) => {
    assert.match(error.message, message);
    return true;
  });
}

async function taskCount(group: number): Promise<number> {
  const { rows } = await db.query<{ n: number }>('SELECT count(*)::int AS n FROM long_task.task WHERE group_id = $1', [group]);
  return rows[0]!.n;
}

/** An executable shell script at `file` (its directories made). */
function script(file: string, body: string): string {
  mkdirSync(file.slice(0, file.lastIndexOf('/')), { recursive: true });
  writeFileSync(file, `#!/bin/sh\n${body}\n`);
  chmodSync(file, 0o755);
  return file;
}

/** `text` as a regular expression that matches it literally. */
function escapeRegex(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

async function expectRefusedAtSpawn(id: number, message: RegExp): Promise<void> {
  await waitEnded(db, [id]);
  const task = await getTask(db, id);
  assert.equal(task.state_id, 'CF');
  assert.equal(task.end_reason, 'refused');
  assert.match(String(task.error), message);
  assert.equal(task.pid, null);
  const { rows } = await db.query<{ end_reason: string; pid: number | null; error: string }>(
    'SELECT end_reason, pid, error FROM long_task.task_run WHERE task_id = $1', [id]);
  assert.equal(rows.length, 1);
  assert.equal(rows[0]!.end_reason, 'refused');
  assert.equal(rows[0]!.pid, null);
}

describe('the trigger, when a task is written', () => {
  it('refuses a forbidden program at INSERT with a clear error, and inserts nothing', async () => {
    await allowlistGroup(21);
    await allow(21, '/usr/bin/true');
    const file = `${tempDir('allow-insert')}/made`;
    await expectRefused(addTask(db, ['touch', file], { group: 21 }),
      /^program "touch" is not allowed in group 21: no rule of task_allowlist covers it in any directory of \/usr\/local\/sbin:.*:\/bin \(group 21 has commands = 'allowlist'\)\. An admin allows a program with: pg-tasks allow 21 \/absolute\/path \(or \/directory\/\) \[--args REGEX\]; or INSERT INTO long_task\.task_allowlist/);
    // One refused row of several: the whole statement is refused.
    await expectRefused(
      db.query("INSERT INTO long_task.task (group_id, state_id, command) VALUES (21, 'AW', '{/usr/bin/true}'), (21, 'AW', ARRAY['/usr/bin/touch', $1])", [file]),
      /^program "\/usr\/bin\/touch" is not allowed in group 21/,
    );
    assert.equal(await taskCount(21), 0);
    // What the rule allows is written.
    await addTask(db, ['/usr/bin/true'], { group: 21, state: 'DR' });
    assert.equal(await taskCount(21), 1);
  });

  it('refuses a forbidden command written by UPDATE, a move into the group, and the queueing of a draft written before the rule', async () => {
    await allowlistGroup(22);
    await allow(22, '/usr/bin/true');
    const ok = await addTask(db, ['/usr/bin/true'], { group: 22, state: 'DR' });
    await expectRefused(db.query("UPDATE long_task.task SET command = '{/bin/sh,-c,true}' WHERE id = $1", [ok]), /^program "\/bin\/sh" is not allowed in group 22/);
    assert.deepEqual((await getTask(db, ok)).command, ['/usr/bin/true']);
    const elsewhere = await addTask(db, ['sh', '-c', 'true'], { group: 0, state: 'DR' });
    await expectRefused(db.query('UPDATE long_task.task SET group_id = 22 WHERE id = $1', [elsewhere]), /^program "sh" is not allowed in group 22/);
    assert.equal((await getTask(db, elsewhere)).group_id, 0);
    // A draft written while the group ran anything: queueing it is refused.
    await db.query("INSERT INTO long_task.task_group (id) VALUES (23)");
    const draft = await addTask(db, ['sh', '-c', 'true'], { group: 23, state: 'DR' });
    await allowlistGroup(23);
    await expectRefused(db.query("UPDATE long_task.task SET state_id = 'AW' WHERE id = $1", [draft]), /^program "sh" is not allowed in group 23/);
    assert.equal((await getTask(db, draft)).state_id, 'DR');
    // Other changes to it are not refused (the node checks it again before it runs).
    await db.query('UPDATE long_task.task SET priority = 5 WHERE id = $1', [draft]);
  });

  it('checks args_pattern against every argument, and a rule with a bad pattern is refused when written', async () => {
    await allowlistGroup(24);
    const dir = tempDir('allow-args');
    await allow(24, '/usr/bin/touch', `^${escapeRegex(dir)}/ok-[0-9]+$`);
    await addTask(db, ['/usr/bin/touch', `${dir}/ok-1`, `${dir}/ok-2`], { group: 24, state: 'DR' });
    await expectRefused(addTask(db, ['/usr/bin/touch', `${dir}/ok-1`, `${dir}/bad`], { group: 24, state: 'DR' }),
      /^argument 3 of \/usr\/bin\/touch \(".*\/bad"\) does not match the args_pattern of rule \d+ of group 24 \(\^.*\/ok-\[0-9\]\+\$\) \(group 24 has commands = 'allowlist'\)/);
    // Another rule for the same program, without a pattern, allows any argument.
    await allow(24, '/usr/bin/touch');
    await addTask(db, ['/usr/bin/touch', `${dir}/ok-1`, `${dir}/bad`], { group: 24, state: 'DR' });
    await expectRefused(
      db.query("INSERT INTO long_task.task_allowlist (group_id, program, args_pattern) VALUES (24, '/usr/bin/env', '(unclosed')"),
      /^invalid args_pattern '\(unclosed': invalid regular expression/,
    );
    const { rows } = await db.query<{ n: number }>("SELECT count(*)::int AS n FROM long_task.task_allowlist WHERE program = '/usr/bin/env'");
    assert.equal(rows[0]!.n, 0);
  });

  it("refuses relative paths, '.' and '..' segments and '//' whatever the rules say", async () => {
    await allowlistGroup(25);
    await allow(25, '/opt/jobs/');
    for (const program of ['/opt/jobs/../../bin/sh', '/opt/jobs/./x', '/opt/jobs//x', '//opt/jobs/x']) {
      await expectRefused(addTask(db, [program], { group: 25 }), /has a "\." or "\.\." segment or "\/\/": write its plain absolute path/);
    }
    for (const program of ['opt/jobs/x', './x', '../opt/jobs/x']) {
      await expectRefused(addTask(db, [program], { group: 25 }), /is a relative path: give an absolute path, or a bare name/);
    }
    await expectRefused(addTask(db, ['..'], { group: 25 }), /program "\.\." is not a program name/);
    await expectRefused(addTask(db, ['/opt/jobs/'], { group: 25 }), /program "\/opt\/jobs\/" is not allowed in group 25/);
    // A rule itself can't name such a path.
    await expectRefused(allow(25, '/opt/jobs/../'), /task_allowlist_program_absolute/);
    assert.equal(await taskCount(25), 0);
  });
});

describe('the node, before it spawns', () => {
  it("refuses a task that slipped past (written before the group became 'allowlist'): CF 'refused', no process", async () => {
    const dir = tempDir('allow-slipped');
    const mark = script(`${dir}/ok/mark`, 'touch "$1"');
    await db.query('INSERT INTO long_task.task_group (id) VALUES (31)');
    const slipped = await addTask(db, ['touch', `${dir}/made`], { group: 31 });
    const sneaky = await addTask(db, [`${dir}/ok/../../../usr/bin/touch`, `${dir}/made-too`], { group: 31 });
    await allowlistGroup(31);
    await allow(31, `${dir}/ok/`);
    // Allowed by the rule, as a control: it runs, and its file appears.
    const control = await addTask(db, [mark, `${dir}/control`], { group: 31 });
    // An update the trigger leaves alone (the node checks it again).
    await db.query('UPDATE long_task.task SET priority = -1 WHERE id = $1', [slipped]);
    await startNode(db, { workerId: 31, groupId: 31 });
    await waitEnded(db, [slipped, sneaky, control]);
    assert.equal((await getTask(db, control)).state_id, 'CS');
    assert.ok(existsSync(`${dir}/control`));
    await expectRefusedAtSpawn(slipped, /^Refused: program "touch" is not allowed in group 31: no rule of task_allowlist covers it/);
    await expectRefusedAtSpawn(sneaky, /^Refused: program ".*\/ok\/\.\.\/\.\.\/\.\.\/usr\/bin\/touch" has a "\." or "\.\." segment/);
    assert.ok(!existsSync(`${dir}/made`), 'the refused task ran');
    assert.ok(!existsSync(`${dir}/made-too`), 'the refused task ran');
  });

  it('refuses a task whose rule was removed after it was written, and runs it once the rule is back, without a restart', async () => {
    const dir = tempDir('allow-rule-change');
    await allowlistGroup(32);
    await allow(32, '/usr/bin/touch');
    const id = await addTask(db, ['touch', `${dir}/made`], { group: 32 });
    await db.query('DELETE FROM long_task.task_allowlist WHERE group_id = 32');
    await startNode(db, { workerId: 32, groupId: 32 });
    await expectRefusedAtSpawn(id, /^Refused: program "touch" is not allowed in group 32: no rule of task_allowlist covers it/);
    assert.ok(!existsSync(`${dir}/made`), 'the refused task ran');
    // Queueing it again is refused by the trigger too, until the rule is back.
    await expectRefused(db.query("UPDATE long_task.task SET state_id = 'AW' WHERE id = $1", [id]), /^program "touch" is not allowed in group 32/);
    await allow(32, '/usr/bin/touch');
    await db.query("UPDATE long_task.task SET state_id = 'AW' WHERE id = $1", [id]);
    await waitEnded(db, [id]);
    assert.equal((await getTask(db, id)).state_id, 'CS');
    assert.ok(existsSync(`${dir}/made`));
  });

  it('runs an allowed exact path and programs under an allowed directory, at any depth', async () => {
    const dir = tempDir('allow-dir');
    await allowlistGroup(33);
    await allow(33, '/usr/bin/true');
    await allow(33, `${dir}/bin/`);
    const mark = script(`${dir}/bin/tools/mark`, 'touch "$1"');
    const exact = await addTask(db, ['/usr/bin/true'], { group: 33 });
    const under = await addTask(db, [mark, `${dir}/marked`], { group: 33 });
    await startNode(db, { workerId: 33, groupId: 33 });
    await waitEnded(db, [exact, under]);
    assert.equal((await getTask(db, exact)).state_id, 'CS');
    assert.equal((await getTask(db, under)).state_id, 'CS');
    assert.ok(existsSync(`${dir}/marked`));
  });

  it('refuses at spawn an argument that does not match args_pattern; %TASK is checked as the task id', async () => {
    const dir = tempDir('allow-args-spawn');
    await db.query('INSERT INTO long_task.task_group (id) VALUES (34)');
    const bad = await addTask(db, ['/usr/bin/touch', `${dir}/bad`], { group: 34 });
    await allowlistGroup(34);
    await allow(34, '/usr/bin/touch', `^(?:${escapeRegex(`${dir}/good`)}|[0-9]+)$`);
    const good = await addTask(db, ['/usr/bin/touch', `${dir}/good`, '%TASK'], { group: 34, cwd: dir });
    await startNode(db, { workerId: 34, groupId: 34 });
    await waitEnded(db, [bad, good]);
    await expectRefusedAtSpawn(bad, /^Refused: argument 2 of \/usr\/bin\/touch \(".*\/bad"\) does not match the args_pattern/);
    assert.ok(!existsSync(`${dir}/bad`), 'the refused task ran');
    assert.equal((await getTask(db, good)).state_id, 'CS');
    assert.ok(existsSync(`${dir}/good`));
    assert.ok(existsSync(`${dir}/${good}`), 'the %TASK argument became the task id');
  });

  it('resolves a bare name against the fixed PATH, and execs the absolute path as argv[0]', async () => {
    await allowlistGroup(35);
    await allow(35, '/usr/bin/');
    // The process reports its own argv[0] (from /proc), whatever PATH the node has.
    const id = await addTask(db, ['sh', '-c', 'tr "\\000" "\\n" < /proc/$$/cmdline | head -n 1'], { group: 35 });
    await startNode(db, { workerId: 35, groupId: 35 });
    await waitEnded(db, [id]);
    const task = await getTask(db, id);
    assert.equal(task.state_id, 'CS', String(task.error));
    assert.equal(String(task.output).trim(), '/usr/bin/sh');
  });

  it('does not resolve a bare name through a rule for a directory outside the fixed PATH', async () => {
    const dir = tempDir('allow-bare');
    script(`${dir}/bin/mark`, 'touch "$1"');
    await db.query('INSERT INTO long_task.task_group (id) VALUES (36)');
    const id = await addTask(db, ['mark', `${dir}/made`], { group: 36 });
    await allowlistGroup(36);
    await allow(36, `${dir}/bin/`);
    await expectRefused(addTask(db, ['mark', `${dir}/made`], { group: 36 }), /^program "mark" is not allowed in group 36: no rule of task_allowlist covers it in any directory of/);
    await startNode(db, { workerId: 36, groupId: 36 });
    await expectRefusedAtSpawn(id, /^Refused: program "mark" is not allowed in group 36/);
    assert.ok(!existsSync(`${dir}/made`), 'the refused task ran');
  });

  it("a node started with --commands allowlist refuses the tasks of a group with commands = 'any' that no rule allows", async () => {
    const dir = tempDir('allow-node-mode');
    await db.query('INSERT INTO long_task.task_group (id) VALUES (37)');
    await allow(37, '/usr/bin/true');
    // The group runs anything: the trigger lets every write through.
    const forbidden = await addTask(db, ['touch', `${dir}/made`], { group: 37 });
    const allowed = await addTask(db, ['true'], { group: 37 });
    await startNode(db, { workerId: 37, groupId: 37, commands: 'allowlist' });
    await waitEnded(db, [forbidden, allowed]);
    await expectRefusedAtSpawn(forbidden, /^Refused: program "touch" is not allowed in group 37/);
    assert.ok(!existsSync(`${dir}/made`), 'the refused task ran');
    assert.equal((await getTask(db, allowed)).state_id, 'CS');
  });

  it("a node with the default --commands any runs a group's tasks as written when the group has commands = 'any'", async () => {
    const dir = tempDir('allow-node-any');
    const id = await addTask(db, ['sh', '-c', 'touch "$0"', `${dir}/made`], { group: 38 });
    await startNode(db, { workerId: 38, groupId: 38 });
    await waitEnded(db, [id]);
    assert.equal((await getTask(db, id)).state_id, 'CS');
    assert.ok(existsSync(`${dir}/made`));
  });
});

describe("pg-tasks' own writes of a task that slipped past are not refused by the trigger (the claim refuses it)", () => {
  it('a retry (AE to AW) of a run that failed after its group became allowlisted: the run ends, the retry is refused at spawn', async () => {
    const dir = tempDir('allow-retry');
    await db.query('INSERT INTO long_task.task_group (id) VALUES (41)');
    await startNode(db, { workerId: 41, groupId: 41 });
    const { rows } = await db.query<{ id: string }>(
      "INSERT INTO long_task.task (group_id, state_id, command, max_attempts, backoff_base) VALUES (41, 'AW', $1, 2, '10 ms') RETURNING id",
      [['sh', '-c', 'while [ ! -e "$0/go" ]; do sleep 0.05; done; touch "$0/ran-$PG_TASKS_TASK_ID-$$"; exit 1', dir]],
    );
    const id = Number(rows[0]!.id);
    await until(async () => (await getTask(db, id)).pid !== null, 'the first run to start');
    await allowlistGroup(41);
    writeFileSync(`${dir}/go`, '');
    await until(async () => (await getTask(db, id)).attempt === 2 && (await getTask(db, id)).state_id === 'CF', 'the retry to end', 30_000);
    const { rows: runs } = await db.query<{ attempt: number; end_reason: string }>(
      'SELECT attempt, end_reason FROM long_task.task_run WHERE task_id = $1 ORDER BY attempt', [id]);
    assert.deepEqual(runs.map((r) => [r.attempt, r.end_reason]), [[1, 'exit_code'], [2, 'refused']]);
    assert.equal(readdirSync(dir).filter((f) => f.startsWith('ran-')).length, 1, 'only the first run had a process');
  });

  it('the scheduler re-queues and copies a schedule written before the rule; each run is refused, and the schedules go on', async () => {
    const dir = tempDir('allow-schedule');
    await db.query('INSERT INTO long_task.task_group (id) VALUES (42)');
    const copied = await addTask(db, ['touch', `${dir}/copy`], { group: 42, state: 'DR' });
    // Not a copy: re-queued (from CF) at each slot once its run has ended.
    const requeued = await addTask(db, ['touch', `${dir}/requeued`], { group: 42 });
    await db.query("UPDATE long_task.task SET next_start = now(), shed_period_id = 'SEC', shed_period_count = 1, shed_clone = (id = $1) WHERE id = ANY($2)", [copied, [copied, requeued]]);
    await allowlistGroup(42);
    await startNode(db, { workerId: 42, groupId: 42 });
    // Two slots each: the first refusal stopped nothing.
    await until(async () => {
      const { rows } = await db.query<{ copies: number; requeues: number }>(
        `SELECT (SELECT count(*)::int FROM long_task.task_run r JOIN long_task.task t ON t.id = r.task_id WHERE t.shed_parent_id = $1 AND r.end_reason = 'refused') AS copies,
                (SELECT count(*)::int FROM long_task.task_run WHERE task_id = $2 AND end_reason = 'refused') AS requeues`, [copied, requeued]);
      return rows[0]!.copies >= 2 && rows[0]!.requeues >= 2;
    }, 'two refused runs of each schedule', 30_000);
    await db.query('UPDATE long_task.task SET next_start = NULL, shed_period_id = NULL, shed_period_count = NULL, shed_clone = false WHERE id = ANY($1)', [[copied, requeued]]);
    assert.ok(!existsSync(`${dir}/copy`) && !existsSync(`${dir}/requeued`), 'a refused task ran');
  });
  it("a recovery that re-queues ('requeue' policy) a task of a failed worker: the recovery completes, the run is refused at spawn", async () => {
    const dir = tempDir('allow-recovery');
    const id = await addTask(db, ['touch', `${dir}/made`], { group: 43, state: 'DR' });
    await db.query("UPDATE long_task.task SET recover_policy = 'requeue', state_id = 'AW' WHERE id = $1", [id]);
    // What the failed node's claim did.
    await markClaimed(db, id, 43, 5);
    await allowlistGroup(43);
    // Its worker, failed: last, since a node running in this file recovers it as soon as it hears of it.
    await db.query("INSERT INTO long_task.worker (id, group_id, active, locked_until, lease_epoch, node_name) VALUES (43, 43, true, now() - interval '1 hour', 5, 'gone')");
    // This call, or the watch of a node still running in this file (it hears of the row at once).
    await recoverWorker(db.pool, loadStatements('long_task'), 43, 0, 2, testLogger);
    await until(async () => (await getTask(db, id)).state_id === 'AW', 'the recovery to queue the task again');
    await startNode(db, { workerId: 44, groupId: 43 });
    await expectRefusedAtSpawn(id, /^Refused: program "touch" is not allowed in group 43/);
    assert.ok(!existsSync(`${dir}/made`), 'the refused task ran');
  });
});

describe('the CLI flag', () => {
  it('--commands with a bad value is one line of error, for node and start', async () => {
    for (const command of ['node', 'start']) {
      const r = await runCli('postgres://postgres@127.0.0.1:1/x', [command, '--commands', 'everything']);
      assert.notEqual(r.code, 0);
      assert.equal(r.stdout, '');
      const lines = r.stderr.trim().split('\n');
      assert.equal(lines[0], 'pg-tasks: --commands: "everything" is not one of any, allowlist', command);
      assert.ok(lines.length === 1 && !/\n\s+at /.test(r.stderr), r.stderr);
    }
  });
});

describe('allow, allowlist, disallow', () => {
  it('add a rule, list it, remove it; a task the rule allows is written only while it stands', async () => {
    await allowlistGroup(51);
    const cli = (args: string[]): ReturnType<typeof runCli> => runCli(db.url, args);
    const added = await cli(['allow', '51', '/usr/bin/rsync', '--args', '^-a$', '--note', 'backup']);
    assert.equal(added.code, 0, added.stderr);
    const id = Number(/^rule (\d+): group 51 may run \/usr\/bin\/rsync, with arguments matching \^-a\$$/m.exec(added.stdout)?.[1]);
    assert.ok(id > 0, added.stdout);
    await addTask(db, ['rsync', '-a'], { group: 51, state: 'DR' });
    const listed = await cli(['allowlist', '51', '--json']);
    assert.deepEqual(JSON.parse(listed.stdout), [{ id, group_id: 51, program: '/usr/bin/rsync', args_pattern: '^-a$', args_patterns: null, allow_dotdot: false, note: 'backup', commands: 'allowlist' }]);
    const table = await cli(['allowlist', '51']);
    assert.match(table.stdout, new RegExp(`^${id} +51 +allowlist +/usr/bin/rsync +\\^-a\\$ +backup$`, 'm'));
    const removed = await cli(['disallow', String(id)]);
    assert.equal(removed.stdout.trim(), `removed rule ${id}: group 51 may no longer run /usr/bin/rsync, with arguments matching ^-a$`);
    await expectRefused(addTask(db, ['rsync', '-a'], { group: 51, state: 'DR' }), /^program "rsync" is not allowed in group 51/);
    assert.equal((await cli(['allowlist', '51'])).stdout.trim(), 'group 51: no rules');
    // A group that runs anything is told where its rules apply.
    assert.match((await cli(['allow', '52', '/opt/jobs/'])).stdout, /^rule \d+: group 52 may run every program under \/opt\/jobs\/, with any arguments\n\(group 52 has commands = 'any': its rules are checked only by nodes started with --commands allowlist/);
  });

  it('--arg gives one pattern per position, --allow-dotdot lets arguments have .. segments', async () => {
    await allowlistGroup(54);
    const cli = (args: string[]): ReturnType<typeof runCli> => runCli(db.url, args);
    const added = await cli(['allow', '54', '/usr/bin/perl', '--arg', '^/opt/jobs/[a-z_/.]+\\.pl$', '--arg', '^--fast$', '--allow-dotdot']);
    assert.equal(added.code, 0, added.stderr);
    assert.match(added.stdout, /^rule \d+: group 54 may run \/usr\/bin\/perl, with argument 1 matching \^\/opt\/jobs\/\[a-z_\/\.\]\+\\\.pl\$, argument 2 matching \^--fast\$, no more arguments, '\.\.' segments allowed$/m);
    const [rule] = JSON.parse((await cli(['allowlist', '54', '--json'])).stdout) as Array<{ args_patterns: string[]; allow_dotdot: boolean; args_pattern: string | null }>;
    assert.deepEqual(rule, { ...rule, args_pattern: null, args_patterns: ['^/opt/jobs/[a-z_/.]+\\.pl$', '^--fast$'], allow_dotdot: true });
    assert.match((await cli(['allowlist', '54'])).stdout, /1:\^\/opt\/jobs\/\S+ 2:\^--fast\$ …:none \(\.\.\)/);
    await addTask(db, ['perl', '/opt/jobs/a/../b.pl', '--fast'], { group: 54, state: 'DR' });
    await expectRefused(addTask(db, ['perl', '/opt/jobs/b.pl', '--fast', '-e1'], { group: 54, state: 'DR' }), /^argument 4 of \/usr\/bin\/perl \("-e1"\) is past the 2 positional patterns/);
    const bad = await cli(['allow', '54', '/usr/bin/env', '--arg', '(unclosed']);
    assert.equal(bad.code, 1);
    assert.match(bad.stderr, /^pg-tasks: invalid args_patterns\[1\] '\(unclosed': invalid regular expression/);
  });

  it('bad input is one line of error, and writes nothing', async () => {
    const cases: Array<[string[], RegExp]> = [
      [['allow', '53', 'bin/sh'], /^pg-tasks: .*a program is an absolute path or a directory ending in \/, got "bin\/sh"$/],
      [['allow', '53', '/opt/../bin/sh'], /^pg-tasks: .*a program has no "\." or "\.\." segment and no "\/\/"/],
      [['allow', '53', '/usr/bin/x', '--args', '(unclosed'], /^pg-tasks: invalid args_pattern '\(unclosed': invalid regular expression/],
      [['allow', 'x', '/usr/bin/x'], /^pg-tasks: .*group must be an integer, got "x"$/],
      [['disallow', '999999'], /^pg-tasks: rule 999999 not found$/],
    ];
    for (const [args, message] of cases) {
      const r = await runCli(db.url, args);
      assert.notEqual(r.code, 0, args.join(' '));
      assert.match(r.stderr.split('\n')[0]!, message, args.join(' '));
      assert.ok(!/\n\s+at /.test(r.stderr), r.stderr);
    }
    const { rows } = await db.query<{ n: number }>('SELECT count(*)::int AS n FROM long_task.task_allowlist WHERE group_id = 53');
    assert.equal(rows[0]!.n, 0);
  });
});
