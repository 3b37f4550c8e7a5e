// What a task gets from its node (issue 13): a clean environment (never the node's database
// credentials unless passed by name), the user it runs as (run_as, allowed by the node), and
// its resource limits (setrlimit in the spawn helper, prlimit in the fallback). Run with
// PGTASKS_SPAWNER=node too: both spawners must give the same.
import assert from 'node:assert/strict';
import { chmodSync, mkdirSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { before, describe, it } from 'node:test';
import { isProcessGroupAlive } from '../src/node/process/process-group.js';
import { TASK_PATH } from '../src/node/process/task-env.js';
import { addTask, getTask, startNode, tempDir, useTestDatabase, waitEnded } from './helpers/node.js';
import { until } from './helpers/wait.js';

const db = useTestDatabase('security_spawn');
const isRoot = process.getuid?.() === 0;
const spawner = process.env.PGTASKS_SPAWNER ?? 'auto';

async function ended(id: number): Promise<Record<string, unknown>> {
  await waitEnded(db, [id]);
  return getTask(db, id);
}

/** The task's environment, from `env` as it printed it. */
function envOf(task: Record<string, unknown>): Map<string, string> {
  const out = typeof task.output === 'string' ? task.output : '';
  return new Map(out.split('\n').filter((l) => l.includes('=')).map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]));
}

describe(`the task's environment (spawner ${spawner})`, () => {
  it('is clean: no DATABASE_URL or PGPASSWORD unless passed by name; --env and the group\'s env and pass_env reach it', async () => {
    assert.ok(process.env.DATABASE_URL, 'the tests run with DATABASE_URL set, so the node has it');
    process.env.PGPASSWORD = 'node-secret';
    process.env.PGTASKS_TEST_PASSED = 'passed-by-node';
    process.env.PGTASKS_TEST_NOT_PASSED = 'not-passed';
    await db.query('INSERT INTO long_task.task_group (id) VALUES (30)');
    const node = await startNode(db, { workerId: 30, groupId: 30, passEnv: ['PGTASKS_TEST_PASSED', 'NO_SUCH_VARIABLE'], env: { NODE_SET: 'n1', PGTASKS_TEST_PASSED: 'overridden-by-env' } });
    try {
      const first = await ended(await addTask(db, ['env'], { group: 30 }));
      assert.equal(first.state_id, 'CS', String(first.error));
      const env = envOf(first);
      assert.equal(env.get('PATH'), TASK_PATH);
      assert.equal(env.has('DATABASE_URL'), false, 'DATABASE_URL must not reach the task');
      assert.equal(env.has('PGPASSWORD'), false, 'PGPASSWORD must not reach the task');
      assert.equal(env.has('PGTASKS_TEST_NOT_PASSED'), false);
      assert.equal(env.has('NO_SUCH_VARIABLE'), false);
      assert.equal(env.get('PGTASKS_TEST_PASSED'), 'overridden-by-env', '--env overrides --pass-env');
      assert.equal(env.get('NODE_SET'), 'n1');
      assert.equal(env.get('PG_TASKS_TASK_ID'), String(first.id));
      assert.equal(env.get('PG_TASKS_ATTEMPT'), '1');
      // Nothing else of the node's: every name is one the rules account for.
      const expected = /^(PATH|HOME|LANG|LANGUAGE|LC_\w+|TZ|PGTASKS_TEST_PASSED|NODE_SET|PG_TASKS_\w+|PWD|SHLVL|_)$/;
      for (const name of env.keys()) assert.match(name, expected, `unexpected variable ${name} in the task's environment`);

      // The group's rules are read in the claim: no restart.
      await db.query(`UPDATE long_task.task_group SET pass_env = '{PGPASSWORD}', env = '{"GROUP_VAR": "g", "NODE_SET": "from-group", "PG_TASKS_TASK_ID": "forged"}' WHERE id = 30`);
      const second = await ended(await addTask(db, ['env'], { group: 30 }));
      const env2 = envOf(second);
      assert.equal(env2.get('PGPASSWORD'), 'node-secret', 'passed by name by the group');
      assert.equal(env2.get('GROUP_VAR'), 'g');
      assert.equal(env2.get('NODE_SET'), 'from-group', "the group's env overrides the node's --env");
      assert.equal(env2.get('PG_TASKS_TASK_ID'), String(second.id), "the task's own variables cannot be overridden");
      assert.equal(env2.has('DATABASE_URL'), false);
    } finally {
      delete process.env.PGPASSWORD;
      await node.shutdown('cancel', 'test done');
    }
  });
});

describe(`run_as (spawner ${spawner})`, () => {
  before(async () => {
    await db.query('INSERT INTO long_task.task_group (id) VALUES (31), (32)');
  });

  it('a run_as the node does not allow ends CF refused, with no process', async () => {
    const node = await startNode(db, { workerId: 31, groupId: 31, allowRunAs: [] });
    try {
      const refused = await ended(await addTask(db, ['sh', '-c', 'echo ran'], { group: 31, runAs: 'nobody' }));
      assert.equal(refused.state_id, 'CF');
      assert.equal(refused.end_reason, 'refused');
      assert.match(String(refused.error), /run_as nobody is not allowed on this node/);
      assert.equal(refused.pid, null);
      assert.equal(refused.output ?? '', '', 'no process, no output');
      const unknown = await ended(await addTask(db, ['sh', '-c', 'echo ran'], { group: 31, runAs: 'pgtasks_no_such_user' }));
      assert.equal(unknown.end_reason, 'refused');
      assert.match(String(unknown.error), /no such user "pgtasks_no_such_user"/);
      // The group's run_as applies when the task has none.
      await db.query("UPDATE long_task.task_group SET run_as = 'nobody' WHERE id = 31");
      const byGroup = await ended(await addTask(db, ['sh', '-c', 'echo ran'], { group: 31 }));
      assert.equal(byGroup.end_reason, 'refused');
      // The node still runs the others.
      await db.query('UPDATE long_task.task_group SET run_as = NULL WHERE id = 31');
      const other = await ended(await addTask(db, ['sh', '-c', 'echo ran'], { group: 31 }));
      assert.equal(other.state_id, 'CS');
    } finally {
      await node.shutdown('cancel', 'test done');
    }
  });

  it('a node refuses to start with an allowed user that does not exist, or root without --allow-run-as-root', async () => {
    await assert.rejects(startNode(db, { workerId: 33, groupId: 32, allowRunAs: ['pgtasks_no_such_user'] }), /--allow-run-as: no such user "pgtasks_no_such_user"/);
    await assert.rejects(startNode(db, { workerId: 34, groupId: 32, allowRunAs: ['root'] }), /needs --allow-run-as-root/);
  });

  it('a node not running as root refuses another user with the reason, and runs its own', { skip: isRoot ? 'needs a node that is not root (CI runs the suite as pgtasks-ci too)' : false }, async () => {
    const self = os.userInfo().username;
    // Root is another user whoever runs the tests, and allowed here: only the node's uid refuses it.
    const node = await startNode(db, { workerId: 35, groupId: 32, allowRunAs: [self], allowRunAsRoot: true });
    try {
      const other = await ended(await addTask(db, ['sh', '-c', 'echo ran'], { group: 32, runAs: 'root' }));
      assert.equal(other.end_reason, 'refused');
      assert.equal(other.pid, null);
      assert.match(String(other.error), /the node runs as uid \d+, not root, so it cannot switch to root/);
      const own = await ended(await addTask(db, ['sh', '-c', 'echo "uid=$(id -u) user=$USER"'], { group: 32, runAs: self }));
      assert.equal(own.state_id, 'CS', String(own.error));
      assert.match(String(own.output), new RegExp(`uid=${process.getuid!()} user=${self}`));
    } finally {
      await node.shutdown('cancel', 'test done');
    }
  });

  it('a node running as root runs the task as nobody: id reports 65534', { skip: isRoot ? false : 'the node must run as root to switch users' }, async () => {
    const node = await startNode(db, { workerId: 32, groupId: 32, allowRunAs: ['nobody'] });
    try {
      const task = await ended(await addTask(db, ['sh', '-c', 'echo "uid=$(id -u) gid=$(id -g) user=$USER"'], { group: 32, runAs: 'nobody', cwd: '/' }));
      assert.equal(task.state_id, 'CS', String(task.error));
      assert.match(String(task.output), /uid=65534 gid=65534 user=nobody/);
      if (spawner !== 'node') {
        // The cwd is entered after the switch: one only root may enter is refused, and said so.
        const dir = path.join(tempDir('run-as'), 'private');
        mkdirSync(dir);
        chmodSync(dir, 0o700);
        const denied = await ended(await addTask(db, ['sh', '-c', 'pwd'], { group: 32, runAs: 'nobody', cwd: dir }));
        assert.equal(denied.end_reason, 'spawn_error');
        assert.match(String(denied.error), /working directory is not usable by nobody \(uid 65534, gid 65534\)/);
      }
    } finally {
      await node.shutdown('cancel', 'test done');
    }
  });
});

describe(`limits (spawner ${spawner})`, () => {
  before(async () => {
    await db.query('INSERT INTO long_task.task_group (id, open_files_max) VALUES (40, 20)');
  });

  it('memory, CPU and open files: a task past its limit ends CF with a readable error, and the node runs the next', async () => {
    const node = await startNode(db, { workerId: 40, groupId: 40, maxTasks: 4 });
    try {
      const memory = await addTask(db, ['perl', '-e', '$x = "x" x (512 * 1024 * 1024); print "allocated\\n"'], { group: 40, limits: { memory_max: 128 * 1024 * 1024 } });
      const cpu = await addTask(db, ['sh', '-c', 'while :; do :; done'], { group: 40, limits: { cpu_seconds_max: 1 }, timeout: '60 seconds' });
      // The smaller of the task's and the group's: a task tightens, never loosens.
      const tighter = await addTask(db, ['sh', '-c', 'ulimit -n'], { group: 40, limits: { open_files_max: 10 } });
      const looser = await addTask(db, ['sh', '-c', 'ulimit -n'], { group: 40, limits: { open_files_max: 5000 } });
      const m = await ended(memory);
      assert.equal(m.state_id, 'CF');
      assert.doesNotMatch(String(m.output), /allocated/);
      assert.match(String(m.error), /ran under the limits: memory 134217728 bytes \(address space\), open files 20/);
      const c = await ended(cpu);
      assert.equal(c.state_id, 'CF');
      assert.equal(c.end_reason, 'signal');
      assert.match(String(c.error), /^killed by signal SIGXCPU: CPU time limit of 1 s reached/);
      assert.equal(String((await ended(tighter)).output).trim(), '10');
      assert.equal(String((await ended(looser)).output).trim(), '20');
      const next = await ended(await addTask(db, ['sh', '-c', 'echo alive'], { group: 40 }));
      assert.equal(next.state_id, 'CS');
      assert.ok(node.state === 'active');
    } finally {
      await node.shutdown('cancel', 'test done');
    }
  });

  it('a bounded fork bomb under pids_max as nobody leaves the node and another task running', { skip: isRoot ? false : 'RLIMIT_NPROC binds only a user that is not root: the node must run as root to switch to nobody' }, async () => {
    await db.query('INSERT INTO long_task.task_group (id) VALUES (41)');
    const node = await startNode(db, { workerId: 41, groupId: 41, maxTasks: 4, allowRunAs: ['nobody'] });
    const dir = tempDir('bomb');
    chmodSync(dir, 0o777);
    try {
      const other = await addTask(db, ['sh', '-c', `touch ${dir}/other-started; while [ ! -e ${dir}/bomb-done ]; do sleep 0.1; done; echo alive`], { group: 41, timeout: '60 seconds' });
      await until(async () => (await getTask(db, other)).state_id === 'AE', 'the other task to run');
      // At most 200 processes of 30 s each, in its process group: bounded, and the node kills
      // the group when the leader ends (the timeout is the backstop).
      const bomb = await addTask(db, ['sh', '-c', `i=0; while [ $i -lt 200 ]; do sleep 30 & i=$((i+1)); done; wait`], { group: 41, runAs: 'nobody', cwd: '/', limits: { pids_max: 20 }, timeout: '30 seconds' });
      const b = await ended(bomb);
      await db.query('SELECT 1');
      assert.equal(b.state_id, 'CF');
      assert.match(String(b.error), /processes 20/);
      assert.match(String(b.output), /fork/i);
      assert.equal(isProcessGroupAlive(Number(b.pid)), false, "the bomb's process group is gone");
      mkdirSync(`${dir}/bomb-done`);
      const o = await ended(other);
      assert.equal(o.state_id, 'CS');
      assert.match(String(o.output), /alive/);
      assert.equal(node.state, 'active');
    } finally {
      await node.shutdown('cancel', 'test done');
    }
  });
});
