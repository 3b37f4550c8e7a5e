// Dependencies: a task with depends_on runs only once every task it names has ended CS; if
// one ends CF or CC, it ends CC ('dependency') without a process, and so do its dependents.
// The order is proven from the processes' own records.
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import { runCli } from './helpers/cli.js';
import { countEvents } from './helpers/events.js';
import { addTask, getTask, startNode, tempDir, useTestDatabase, waitEnded } from './helpers/node.js';
import { until } from './helpers/wait.js';

const db = useTestDatabase('dependencies', { setup: (db) => startNode(db, { workerId: 1, maxTasks: 4 }) });

/** A task that records its start and end (ns) in dir/NAME, sleeping in between; exit code `code`. */
function recording(dir: string, name: string, code = 0): string[] {
  return ['sh', '-c', `echo "start $(date +%s%N)" >> "$0/$1"; sleep 0.3; echo "end $(date +%s%N)" >> "$0/$1"; exit ${code}`, dir, name];
}

function times(dir: string, name: string): { start: bigint; end: bigint } {
  const lines = readFileSync(`${dir}/${name}`, 'utf8').trim().split('\n');
  assert.equal(lines.length, 2, `${name} ran once`);
  return { start: BigInt(lines[0]!.split(' ')[1]!), end: BigInt(lines[1]!.split(' ')[1]!) };
}

describe('dependencies', () => {
  it('runs a diamond in order: each task starts only after all it depends on have ended', async () => {
    const dir = tempDir('deps-diamond');
    const a = await addTask(db, recording(dir, 'a'));
    const b = await addTask(db, recording(dir, 'b'), { dependsOn: [a] });
    const c = await addTask(db, recording(dir, 'c'), { dependsOn: [a] });
    const d = await addTask(db, recording(dir, 'd'), { dependsOn: [b, c] });
    await waitEnded(db, [a, b, c, d]);
    for (const id of [a, b, c, d]) assert.equal((await getTask(db, id)).state_id, 'CS');
    const [ta, tb, tc, td] = ['a', 'b', 'c', 'd'].map((name) => times(dir, name)) as [ReturnType<typeof times>, ReturnType<typeof times>, ReturnType<typeof times>, ReturnType<typeof times>];
    assert.ok(tb.start >= ta.end && tc.start >= ta.end, 'b and c start after a ends');
    assert.ok(td.start >= tb.end && td.start >= tc.end, 'd starts after both b and c end');
  });

  it('a failed prerequisite cancels its dependents, transitively, without starting a process', async () => {
    const dir = tempDir('deps-fail');
    const a = await addTask(db, recording(dir, 'a', 3));
    const b = await addTask(db, recording(dir, 'b'), { dependsOn: [a] });
    const c = await addTask(db, recording(dir, 'c'), { dependsOn: [b] });
    const d = await addTask(db, recording(dir, 'd'), { dependsOn: [c, b] });
    const other = await addTask(db, recording(dir, 'other'));
    const e = await addTask(db, recording(dir, 'e'), { dependsOn: [other, d] });
    await waitEnded(db, [a, b, c, d, other, e]);
    assert.equal((await getTask(db, a)).state_id, 'CF');
    for (const [id, on] of [[b, a], [c, b], [d, b], [e, d]] as const) {
      const t = await getTask(db, id);
      assert.deepEqual([t.state_id, t.end_reason, t.attempt], ['CC', 'dependency', 0], `task ${id}`);
      assert.match(String(t.error), new RegExp(`^Cancelled: it depends on task ${on}, which ended C[FC]$`));
    }
    for (const name of ['b', 'c', 'd', 'e']) assert.equal(existsSync(`${dir}/${name}`), false, `${name} never started`);
    assert.equal((await getTask(db, other)).state_id, 'CS');
  });

  it('re-queuing a failed prerequisite does not re-run its cancelled dependents unless they are queued too', async () => {
    const dir = tempDir('deps-requeue');
    const a = await addTask(db, ['sh', '-c', 'test -f "$0/ok"', dir]);
    const b = await addTask(db, recording(dir, 'b'), { dependsOn: [a] });
    await waitEnded(db, [a, b]);
    assert.deepEqual([(await getTask(db, a)).state_id, (await getTask(db, b)).state_id], ['CF', 'CC']);
    await db.query("UPDATE long_task.task SET state_id = 'AW', command = '{true}' WHERE id = $1", [a]);
    await until(async () => (await getTask(db, a)).state_id === 'CS', 'the prerequisite to run again');
    assert.equal((await getTask(db, b)).state_id, 'CC', 'the dependent stays as it ended');
    // Both queued in one statement: the dependent waits for the prerequisite, then runs.
    await db.query("UPDATE long_task.task SET state_id = 'AW', command = CASE WHEN id = $1 THEN '{sleep,0.3}' ELSE command END WHERE id IN ($1, $2)", [a, b]);
    await waitEnded(db, [a, b]);
    await until(async () => (await getTask(db, b)).state_id === 'CS', 'the dependent to run after it');
    assert.ok(+((await getTask(db, b)).started as Date) >= +((await getTask(db, a)).finished as Date) - 5);
  });

  it('releases and cancels in one statement, set-based: 500 prerequisites cancelled at once cancel their 500 dependents', async () => {
    // Group 77 has no node: nothing runs; the statement's own triggers do all of it.
    const { rows: pre } = await db.query<{ id: string }>(
      "INSERT INTO long_task.task (command, state_id, group_id) SELECT '{true}', 'AW', 77 FROM generate_series(1, 500) RETURNING id",
    );
    const ids = pre.map((r) => Number(r.id));
    await db.query(
      "INSERT INTO long_task.task (command, state_id, group_id, depends_on) SELECT '{true}', 'AW', 77, ARRAY[p] FROM unnest($1::bigint[]) AS p",
      [ids],
    );
    const { rows: waiting } = await db.query<{ n: number }>('SELECT count(*)::int AS n FROM long_task.task WHERE group_id = 77 AND deps_left = 1');
    assert.equal(waiting[0]!.n, 500);
    await db.query("UPDATE long_task.task SET state_id = 'AC' WHERE id = ANY($1)", [ids]);
    const { rows } = await db.query<{ state_id: string; end_reason: string; n: number }>(
      'SELECT state_id, end_reason, count(*)::int AS n FROM long_task.task WHERE group_id = 77 GROUP BY 1, 2 ORDER BY 2',
    );
    assert.deepEqual(rows.map((r) => [r.state_id, r.end_reason, r.n]), [['CC', 'cancelled', 500], ['CC', 'dependency', 500]]);
  });

  it('under concurrency: dependents written while their prerequisites end on three nodes all run, none is left waiting', async () => {
    // Group 78, three nodes: prerequisites end in concurrent finish statements while the
    // dependents are inserted, each in its own statement; each dependent names 8 of them.
    const nodes = await Promise.all([2, 3, 4].map((w) => startNode(db, { workerId: w, groupId: 78, maxTasks: 4 })));
    // Runs ended so far on the three nodes: the dependents are written as they go, not on a
    // clock (which a loaded machine outruns, or lags behind).
    const ends = nodes.map((node) => countEvents(node, 'run:ended'));
    const ended = (): number => ends.reduce((n, e) => n + e.count, 0);
    const { rows } = await db.query<{ id: string }>(
      "INSERT INTO long_task.task (command, state_id, group_id) SELECT '{true}', 'AW', 78 FROM generate_series(1, 150) RETURNING id",
    );
    const pre = rows.map((r) => Number(r.id));
    let seed = 7;
    const rand = (): number => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31);
    const dependents = await Promise.all(Array.from({ length: 40 }, async (_, i) => {
      await until(() => ended() >= i * 3, `${i * 3} runs to end before dependent ${i} is written`, 60_000);
      const picks = [...new Set(Array.from({ length: 8 }, () => pre[Math.floor(rand() * pre.length)]!))];
      return addTask(db, ['true'], { dependsOn: picks, group: 78 });
    }));
    // And a fan-in over all of them, and over the dependents.
    const last = await addTask(db, ['true'], { dependsOn: [...pre.slice(0, 20), ...dependents], group: 78 });
    await until(async () => (await db.query("SELECT 1 FROM long_task.task WHERE group_id = 78 AND state_id <> 'CS'")).rowCount === 0,
      'every task of the group to end CS', 120_000);
    assert.equal((await getTask(db, last)).state_id, 'CS');
    for (const e of ends) e.stop();
  });

  it('a dependent written while one transaction ends its prerequisites in the reverse of id order: both go through, no deadlock', async () => {
    // In group 79, which no node serves; the prerequisites are set executing by hand. The
    // transaction ends p2 (holding its row), the INSERT of a
    // dependent of p1 and p2 then waits for p2; the transaction then ends p1. Had the INSERT
    // kept p1's share lock while waiting for p2, this was a deadlock (seen in CI, from a
    // node's end of several runs at once).
    const p1 = await addTask(db, ['true'], { group: 79 });
    const p2 = await addTask(db, ['true'], { group: 79 });
    await db.query("UPDATE long_task.task SET state_id = 'AE' WHERE id = ANY($1)", [[p1, p2]]);
    const ender = await db.pool.connect();
    try {
      await ender.query('BEGIN');
      await ender.query("UPDATE long_task.task SET state_id = 'CS' WHERE id = $1", [p2]);
      const dependent = addTask(db, ['true'], { dependsOn: [p1, p2], state: 'DR' });
      await until(async () => (await db.query(
        "SELECT 1 FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock' AND query LIKE 'INSERT INTO long_task.task%'",
      )).rowCount === 1, 'the INSERT to wait for the row the transaction holds', 10_000);
      await ender.query("UPDATE long_task.task SET state_id = 'CS' WHERE id = $1", [p1]);
      await ender.query('COMMIT');
      const id = await dependent;
      const task = await getTask(db, id);
      assert.equal(task.state_id, 'DR');
      assert.equal((await db.query<{ deps_left: number }>('SELECT deps_left FROM long_task.task WHERE id = $1', [id])).rows[0]!.deps_left, 0,
        'both prerequisites are counted as ended');
    } finally {
      ender.release();
    }
  });

  it('refuses a cycle, a task depending on itself, and tasks that do not exist, when written', async () => {
    const a = await addTask(db, ['true'], { state: 'DR' });
    const b = await addTask(db, ['true'], { dependsOn: [a], state: 'DR' });
    const c = await addTask(db, ['true'], { dependsOn: [b], state: 'DR' });
    await assert.rejects(db.query('UPDATE long_task.task SET depends_on = $2 WHERE id = $1', [a, [c]]), /can't depend on \d+: that would make a cycle/);
    await assert.rejects(db.query('UPDATE long_task.task SET depends_on = $2 WHERE id = $1', [a, [a]]), /can't depend on itself/);
    await assert.rejects(addTask(db, ['true'], { dependsOn: [999_999_999] }), /depends_on names task 999999999, which does not exist/);
    assert.equal((await getTask(db, a)).depends_on, null, 'nothing changed');
  });

  it('pg-tasks add --after and show: what a task waits for, and the one-line error for a bad id', async () => {
    const first = await addTask(db, ['sleep', '0.5']);
    const added = await runCli(db.url, ['add', '--after', `${first}`, '--', 'true']);
    assert.equal(added.code, 0, added.stderr);
    const id = Number(added.stdout.trim());
    const shown = await runCli(db.url, ['show', String(id)]);
    assert.match(shown.stdout, new RegExp(`^(waits for|ran after): +${first} \\((A[WE]|CS)\\)`, 'm'));
    await waitEnded(db, [first, id]);
    assert.equal((await getTask(db, id)).state_id, 'CS');
    const missing = await runCli(db.url, ['add', '--after', '999999999', '--', 'true']);
    assert.equal(missing.code, 1);
    assert.equal(missing.stderr, 'pg-tasks: --after: task 999999999 does not exist\n');
    const bad = await runCli(db.url, ['add', '--after', '12,x', '--', 'true']);
    assert.equal(bad.code, 1);
    assert.match(bad.stderr, /a task id is a positive integer, got "x"/);
  });
});
