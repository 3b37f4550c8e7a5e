// depends_rule: when a dependent runs. all_success (the default) waits for every prerequisite
// to end CS; all_done for every one to end, however; any_failed runs as soon as one fails (CF,
// deleted, or CC 'dependency' because of a failure above it) and ends CC 'dependency' when all
// end and none failed. The recounts are read in a group with no node (77), where the
// statement's own triggers do all of it; the runs, on the file's node (group 0).
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { describe, it } from 'node:test';
import type { TestDatabase } from './helpers/db.js';
import { TaskClient } from '../src/client/client.js';
import { runCli } from './helpers/cli.js';
import { getTask, startNode, tempDir, useTestDatabase, waitEnded } from './helpers/node.js';
import { until } from './helpers/wait.js';

const db = useTestDatabase('depends-rule', { setup: (db) => startNode(db, { workerId: 1, maxTasks: 4 }) });

interface Fields { after?: number[]; rule?: string; group?: number; state?: string; maxAttempts?: number; backoffBase?: string }

async function add(db: TestDatabase, command: string[], f: Fields = {}): Promise<number> {
  const { rows } = await db.query<{ id: string }>(
    `INSERT INTO long_task.task (command, state_id, group_id, depends_on, depends_rule, max_attempts, backoff_base)
     VALUES ($1, $2, $3, $4, coalesce($5, 'all_success'), $6, $7::interval) RETURNING id`,
    [command, f.state ?? 'AW', f.group ?? 77, f.after ?? null, f.rule ?? null, f.maxAttempts ?? null, f.backoffBase ?? null],
  );
  return Number(rows[0]!.id);
}

async function row(id: number): Promise<{ state_id: string; deps_left: number; end_reason: string | null; error: string | null }> {
  const t = await getTask(db, id);
  return { state_id: t.state_id as string, deps_left: t.deps_left as number, end_reason: t.end_reason as string | null, error: t.error as string | null };
}

/**
 * Ends tasks of the nodeless group: CS or CF from AE, as a run's end is written (worker 99
 * has no node), or a user's cancel of a waiting task (CC 'cancelled').
 */
async function end(ids: number[], state: 'CS' | 'CF' | 'CC'): Promise<void> {
  if (state === 'CC') {
    await db.query("UPDATE long_task.task SET state_id = 'AC' WHERE id = ANY($1)", [ids]);
    return;
  }
  await db.query("UPDATE long_task.task SET state_id = 'AE', worker_id = 99 WHERE id = ANY($1)", [ids]);
  await db.query('UPDATE long_task.task SET state_id = $2 WHERE id = ANY($1)', [ids, state]);
}

/** A task that leaves a file named `name` in dir when it runs. */
function marks(dir: string, name: string, code = 0): string[] {
  return ['sh', '-c', `touch "$0/$1"; exit ${code}`, dir, name];
}

describe('depends_rule', () => {
  it('defaults to all_success, so an INSERT that does not name it keeps the seed rule; other values are refused', async () => {
    const a = await add(db, ['true']);
    const { rows } = await db.query<{ id: string; depends_rule: string }>(
      "INSERT INTO long_task.task (state_id, command, depends_on, group_id) VALUES ('AW', '{./report.sh}', $1, 77) RETURNING id, depends_rule", [[a]]);
    assert.equal(rows[0]!.depends_rule, 'all_success');
    await end([a], 'CF');
    assert.deepEqual(await row(Number(rows[0]!.id)), { state_id: 'CC', deps_left: 1, end_reason: 'dependency', error: `Cancelled: it depends on task ${a}, which ended CF` });
    await assert.rejects(add(db, ['true'], { after: [a], rule: 'any-failed' }), /task_depends_rule_valid/);
  });

  it('all_done waits for every prerequisite to end, however it ends, and then may run', async () => {
    const [a, b, c, d] = [await add(db, ['true']), await add(db, ['true']), await add(db, ['true']), await add(db, ['true'])];
    const after = await add(db, ['true'], { after: [a, b, c, d], rule: 'all_done' });
    assert.equal((await row(after)).deps_left, 4);
    await end([a], 'CF');
    assert.deepEqual(await row(after), { state_id: 'AW', deps_left: 3, end_reason: null, error: null });
    await end([b], 'CC');
    await end([c], 'CS');
    assert.equal((await row(after)).deps_left, 1);
    await db.query('DELETE FROM long_task.task WHERE id = $1', [d]);
    assert.deepEqual(await row(after), { state_id: 'AW', deps_left: 0, end_reason: null, error: null });
  });

  it('any_failed runs as soon as one prerequisite fails; ends CC when all end CS, or none failed', async () => {
    const [a, b] = [await add(db, ['true']), await add(db, ['true'])];
    const onFailure = await add(db, ['true'], { after: [a, b], rule: 'any_failed' });
    assert.equal((await row(onFailure)).deps_left, 2);
    await end([a], 'CF');
    assert.deepEqual(await row(onFailure), { state_id: 'AW', deps_left: 0, end_reason: null, error: null }, 'runs before b ends');

    const [c, e] = [await add(db, ['true']), await add(db, ['true'])];
    const notNeeded = await add(db, ['true'], { after: [c, e], rule: 'any_failed' });
    await end([c], 'CS');
    assert.deepEqual(await row(notNeeded), { state_id: 'AW', deps_left: 1, end_reason: null, error: null });
    await end([e], 'CS');
    assert.deepEqual(await row(notNeeded), { state_id: 'CC', deps_left: 1, end_reason: 'dependency',
      error: 'Cancelled: it runs only if a task it depends on fails, and none did' });

    // A user's cancel is not a failure.
    const [f, g] = [await add(db, ['true']), await add(db, ['true'])];
    const cancelled = await add(db, ['true'], { after: [f, g], rule: 'any_failed' });
    await end([f], 'CC');
    await end([g], 'CS');
    assert.equal((await row(cancelled)).state_id, 'CC');
    // A deleted prerequisite is (as for all_success).
    const h = await add(db, ['true']);
    const deleted = await add(db, ['true'], { after: [h], rule: 'any_failed' });
    await db.query('DELETE FROM long_task.task WHERE id = $1', [h]);
    assert.equal((await row(deleted)).deps_left, 0);
  });

  it('a dependent inserted after its prerequisites ended reads them by its rule at once', async () => {
    const [ok, failed, cancelled] = [await add(db, ['true']), await add(db, ['true']), await add(db, ['true'])];
    await end([ok], 'CS');
    await end([failed], 'CF');
    await end([cancelled], 'CC');
    assert.equal((await row(await add(db, ['true'], { after: [ok, failed], rule: 'all_done' }))).deps_left, 0);
    assert.equal((await row(await add(db, ['true'], { after: [ok, failed], rule: 'any_failed' }))).deps_left, 0);
    assert.deepEqual((await row(await add(db, ['true'], { after: [ok, cancelled], rule: 'any_failed' }))).state_id, 'CC');
    assert.deepEqual((await row(await add(db, ['true'], { after: [ok, failed] }))).state_id, 'CC');
    assert.deepEqual(await row(await add(db, ['true'], { after: [ok] })), { state_id: 'AW', deps_left: 0, end_reason: null, error: null });
    // A draft is never cancelled; queued, it is read again.
    const draft = await add(db, ['true'], { after: [ok], rule: 'any_failed', state: 'DR' });
    assert.equal((await row(draft)).state_id, 'DR');
    await db.query("UPDATE long_task.task SET state_id = 'AW' WHERE id = $1", [draft]);
    assert.equal((await row(draft)).state_id, 'CC');
  });

  it('in a chain, a failure cancelled down the line is a failure for any_failed; a skipped any_failed is not', async () => {
    // root -> 200 all_success links -> last; notify (any_failed on last); then an all_success
    // and an any_failed task after notify, and an all_done one after last.
    const root = await add(db, ['true']);
    let last = root;
    const chain: number[] = [];
    for (let i = 0; i < 200; i++) chain.push(last = await add(db, ['true'], { after: [last] }));
    const notify = await add(db, ['true'], { after: [last], rule: 'any_failed' });
    const afterNotify = await add(db, ['true'], { after: [notify] });
    const onNotifyFailing = await add(db, ['true'], { after: [notify], rule: 'any_failed' });
    const cleanup = await add(db, ['true'], { after: [last], rule: 'all_done' });
    await end([root], 'CF'); // one statement: the whole chain, and what reads it
    const { rows } = await db.query<{ n: number }>("SELECT count(*)::int AS n FROM long_task.task WHERE id = ANY($1) AND state_id = 'CC' AND end_reason = 'dependency'", [chain]);
    assert.equal(rows[0]!.n, 200);
    assert.deepEqual(await row(notify), { state_id: 'AW', deps_left: 0, end_reason: null, error: null }, 'notify may run');
    assert.deepEqual(await row(cleanup), { state_id: 'AW', deps_left: 0, end_reason: null, error: null });
    assert.equal((await row(afterNotify)).deps_left, 1);
    assert.equal((await row(onNotifyFailing)).deps_left, 1);

    // The same, all succeeding: notify is skipped (CC), which fails afterNotify's all_success
    // and is no failure for onNotifyFailing, which ends CC too.
    const root2 = await add(db, ['true']);
    const mid = await add(db, ['true'], { after: [root2] });
    const notify2 = await add(db, ['true'], { after: [mid], rule: 'any_failed' });
    const afterNotify2 = await add(db, ['true'], { after: [notify2] });
    const onNotify2 = await add(db, ['true'], { after: [notify2], rule: 'any_failed' });
    const always2 = await add(db, ['true'], { after: [notify2], rule: 'all_done' });
    await end([root2], 'CS');
    await end([mid], 'CS');
    assert.equal((await row(notify2)).state_id, 'CC');
    assert.deepEqual(await row(afterNotify2), { state_id: 'CC', deps_left: 1, end_reason: 'dependency', error: `Cancelled: it depends on task ${notify2}, which ended CC` });
    assert.equal((await row(onNotify2)).state_id, 'CC');
    assert.deepEqual(await row(always2), { state_id: 'AW', deps_left: 0, end_reason: null, error: null });
  });

  it('changing the rule of a waiting task recounts it', async () => {
    const [a, b] = [await add(db, ['true']), await add(db, ['true'])];
    const t = await add(db, ['true'], { after: [a, b] });
    await end([a], 'CS');
    await db.query("UPDATE long_task.task SET depends_rule = 'any_failed' WHERE id = $1", [t]);
    assert.equal((await row(t)).deps_left, 1);
    await end([b], 'CF');
    assert.equal((await row(t)).deps_left, 0);
  });

  it('notify on failure, run by a node: the handler runs after a failure, not after a failing attempt that retries', async () => {
    const dir = tempDir('deps-rule');
    // extract fails its first attempt and succeeds on its retry: it has not ended in between.
    const extract = await add(db, ['sh', '-c', 'test -f "$0/tried" || { touch "$0/tried"; exit 1; }', dir], { group: 0, maxAttempts: 2, backoffBase: '100 ms' });
    const report = await add(db, marks(dir, 'report', 3), { group: 0, after: [extract] });
    const publish = await add(db, marks(dir, 'publish'), { group: 0, after: [report] });
    const notify = await add(db, marks(dir, 'notify'), { group: 0, after: [publish], rule: 'any_failed' });
    const cleanup = await add(db, marks(dir, 'cleanup'), { group: 0, after: [extract, publish], rule: 'all_done' });
    const skipped = await add(db, marks(dir, 'skipped'), { group: 0, after: [extract], rule: 'any_failed' });
    await waitEnded(db, [extract, report, publish, notify, cleanup, skipped]);
    assert.equal((await getTask(db, extract)).attempt, 2);
    assert.deepEqual([(await row(extract)).state_id, (await row(report)).state_id, (await row(publish)).state_id], ['CS', 'CF', 'CC']);
    assert.deepEqual([(await row(notify)).state_id, (await row(cleanup)).state_id], ['CS', 'CS']);
    assert.ok(existsSync(`${dir}/notify`) && existsSync(`${dir}/cleanup`));
    assert.deepEqual([(await row(skipped)).state_id, (await row(skipped)).end_reason], ['CC', 'dependency']);
    assert.equal(existsSync(`${dir}/skipped`), false, 'the failed first attempt did not start the handler');
    assert.equal(existsSync(`${dir}/publish`), false);
  });

  it("the client's add takes dependsRule; without it, all_success", async () => {
    const client = new TaskClient({ connectionString: db.url });
    try {
      const first = await client.add({ command: ['true'], groupId: 77 });
      const onFailure = await client.add({ command: ['true'], groupId: 77, dependsOn: [first.id], dependsRule: 'any_failed' });
      const plain = await client.add({ command: ['true'], groupId: 77, dependsOn: [first.id] });
      assert.deepEqual([onFailure.depends_rule, onFailure.deps_left, plain.depends_rule], ['any_failed', 1, 'all_success']);
      await end([Number(first.id)], 'CF');
      assert.deepEqual([(await client.get(Number(onFailure.id))).deps_left, (await client.get(Number(plain.id))).state_id], [0, 'CC']);
    } finally {
      await client.close();
    }
  });

  it('pg-tasks add --after --when, and show says the rule', async () => {
    const first = await add(db, ['true'], { group: 0 });
    const added = await runCli(db.url, ['add', '--after', `${first}`, '--when', 'any-failed', '--', 'true']);
    assert.equal(added.code, 0, added.stderr);
    const id = Number(added.stdout.trim());
    assert.equal((await getTask(db, id)).depends_rule, 'any_failed');
    const shown = await runCli(db.url, ['show', String(id)]);
    assert.match(shown.stdout, /^runs when: +any prerequisite fails$/m);
    await until(async () => (await row(id)).state_id === 'CC', 'the handler to be skipped');
    const always = await runCli(db.url, ['add', '--after', `${first}`, '--when', 'all-done', '--', 'true']);
    assert.equal(always.code, 0, always.stderr);
    assert.equal((await getTask(db, Number(always.stdout.trim()))).depends_rule, 'all_done');
    const bad = await runCli(db.url, ['add', '--after', `${first}`, '--when', 'sometimes', '--', 'true']);
    assert.equal(bad.code, 1);
    assert.match(bad.stderr, /^pg-tasks: --when: "sometimes" is not one of .*all-success.*all-done.*any-failed/);
    const alone = await runCli(db.url, ['add', '--when', 'all-done', '--', 'true']);
    assert.equal(alone.code, 1);
    assert.equal(alone.stderr, 'pg-tasks: --when needs --after\n');
  });
});
