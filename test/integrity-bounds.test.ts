// Bounded input, and one bad row never blocks others (issue 25): a cancel cascades down a
// chain as deep as the limit (or deeper, written before the limit) in one statement, at a
// fixed stack depth; oversized values are refused with one line naming the limit, at once;
// a run whose end the database refuses on its own ends CF 'result_rejected' while the rest of
// its batch is written.
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import { writeBisected } from '../src/node/runs/row-errors.js';
import { countEvents } from './helpers/events.js';
import { addTask, getTask, startNode, tempDir, useTestDatabase, waitEnded } from './helpers/node.js';
import type { TestDatabase } from './helpers/db.js';
import { until } from './helpers/wait.js';

const db = useTestDatabase('integrity_bounds', { setup: (db) => startNode(db, { workerId: 1, maxTasks: 8 }) });

/** A task that waits for dir/go (a gate the test opens), then runs `then`. */
function gated(dir: string, then: string): string[] {
  return ['sh', '-c', `while [ ! -e "$0/go" ]; do sleep 0.05; done; ${then}`, dir];
}

/**
 * A chain of `n` waiting tasks in `group` below `root` (each depends on the one before), built
 * in one round trip; returns the ids, root first.
 */
async function chain(db: TestDatabase, root: number, n: number, group: number): Promise<number[]> {
  // (DO takes no parameters: the three numbers are the test's own integers.)
  await db.query(`DO $$
    DECLARE prev bigint := ${root}; cur bigint;
    BEGIN
      FOR i IN 1..${n} LOOP
        INSERT INTO long_task.task (command, state_id, group_id, depends_on) VALUES ('{true}', 'AW', ${group}, ARRAY[prev]) RETURNING id INTO cur;
        prev := cur;
      END LOOP;
    END $$`);
  const { rows } = await db.query<{ id: string }>(
    'SELECT id FROM long_task.task WHERE group_id = $1 AND (id = $2 OR id > $2 AND depends_on IS NOT NULL) ORDER BY id',
    [group, root],
  );
  return rows.map((r) => Number(r.id));
}

async function states(ids: number[]): Promise<Record<string, number>> {
  const { rows } = await db.query<{ k: string; n: number }>(
    "SELECT state_id || ' ' || coalesce(end_reason, '-') AS k, count(*)::int AS n FROM long_task.task WHERE id = ANY($1) GROUP BY 1",
    [ids],
  );
  return Object.fromEntries(rows.map((r) => [r.k, r.n]));
}

async function refusal(sql: string, values: unknown[] = []): Promise<string> {
  try {
    await db.query(sql, values);
  } catch (error) {
    return (error as Error).message;
  }
  return 'not refused';
}

describe('bounded input; one bad row never blocks others', () => {
  it('a chain as deep as the limit whose root fails ends CC in the root\'s own write, and the node\'s other runs end too', async () => {
    const dir = tempDir('deep-chain');
    const root = await addTask(db, gated(dir, 'exit 3'));
    const others = await Promise.all([1, 2, 3, 4, 5].map(() => addTask(db, gated(dir, 'echo ok'))));
    // 1 000 waiting tasks below the root: the last one is 1 000 deep, the limit.
    const ids = await chain(db, root, 1000, 0);
    assert.equal(ids.length, 1001);
    const tail = ids.at(-1)!;
    writeFileSync(`${dir}/go`, '');
    // The node writes the root's end (and the others', in the same batches): the cascade runs
    // inside that write. Today's main failed it (stack depth limit exceeded) and retried the
    // batch for ever, so the root and its batch stayed AE.
    await waitEnded(db, [root, ...others], 60_000);
    assert.deepEqual(await states([root]), { 'CF exit_code': 1 });
    assert.deepEqual(await states(others), { 'CS completed': 5 });
    assert.deepEqual(await states(ids.slice(1)), { 'CC dependency': 1000 });
    const last = await getTask(db, tail);
    assert.equal(last.error, `Cancelled: it depends on task ${ids.at(-2)}, which ended CC`);
    assert.equal((await getTask(db, ids[1]!)).error, `Cancelled: it depends on task ${root}, which ended CF`);
    // One level more is refused (ended prerequisites count too).
    assert.equal(
      await refusal("INSERT INTO long_task.task (command, state_id, depends_on) VALUES ('{true}', 'AW', ARRAY[$1::bigint])", [tail]),
      'a chain of prerequisites may be at most 1000 deep: this depends_on makes it deeper',
    );
  });

  it('cancelling the root of a chain 3 000 deep (written before the limit) ends it all in that one statement', async () => {
    // A chain written before the limit existed: the limit's trigger set aside while it is built.
    await db.query(`DO $$ BEGIN
      IF EXISTS (SELECT 1 FROM pg_trigger WHERE tgname = 'task_bounds_insert') THEN
        ALTER TABLE long_task.task DISABLE TRIGGER task_bounds_insert;
      END IF; END $$`);
    let ids: number[];
    try {
      const root = await addTask(db, ['true'], { group: 77 }); // group 77 has no node
      ids = await chain(db, root, 3000, 77);
    } finally {
      await db.query(`DO $$ BEGIN
        IF EXISTS (SELECT 1 FROM pg_trigger WHERE tgname = 'task_bounds_insert') THEN
          ALTER TABLE long_task.task ENABLE TRIGGER task_bounds_insert;
        END IF; END $$`);
    }
    assert.equal(ids.length, 3001);
    const { rowCount } = await db.query("UPDATE long_task.task SET state_id = 'AC' WHERE id = $1", [ids[0]]);
    assert.equal(rowCount, 1);
    // Nothing to wait for: the statement has returned, and with it the whole cascade.
    assert.deepEqual(await states(ids), { 'CC cancelled': 1, 'CC dependency': 3000 });
  });

  it('an update that would hang a waiting chain below a longer one is refused', async () => {
    const a = await chain(db, await addTask(db, ['true'], { group: 78 }), 600, 78);
    const b = await chain(db, await addTask(db, ['true'], { group: 79 }), 500, 79);
    // b's root under a's tail: 601 + 500 levels.
    assert.equal(
      await refusal('UPDATE long_task.task SET depends_on = ARRAY[$1::bigint] WHERE id = $2', [a.at(-1), b[0]]),
      'a chain of prerequisites may be at most 1000 deep: this depends_on makes it deeper',
    );
    // Under a's 400th task it fits: 400 + 500 levels.
    await db.query('UPDATE long_task.task SET depends_on = ARRAY[$1::bigint] WHERE id = $2', [a[399], b[0]]);
    assert.equal(Number((await getTask(db, b[0]!)).deps_left), 1);
  });

  it('refuses oversized values at once, each with one line naming its limit', async () => {
    const p = await addTask(db, ['true'], { group: 77 });
    // 3 000 000 ids: stored after 26.8 s on today's main; refused before any is looked up.
    const huge = `{${Array.from({ length: 3_000_000 }, () => p).join(',')}}`;
    const started = performance.now();
    assert.equal(
      await refusal("INSERT INTO long_task.task (command, state_id, group_id, depends_on) VALUES ('{true}', 'AW', 77, $1)", [huge]),
      'depends_on names 3000000 tasks: at most 1000',
    );
    const ms = performance.now() - started;
    assert.ok(ms < 15_000, `refused in ${Math.round(ms)} ms`);
    const insert = (column: string, value: unknown): Promise<string> =>
      refusal(`INSERT INTO long_task.task (command, state_id, group_id, ${column}) VALUES ('{true}', 'AW', 77, $1)`, [value]);
    assert.equal(await insert('depends_on', Array.from({ length: 1001 }, () => p)), 'depends_on names 1001 tasks: at most 1000');
    const cmd = (value: string[]): Promise<string> =>
      refusal("INSERT INTO long_task.task (command, state_id, group_id) VALUES ($1, 'AW', 77)", [value]);
    assert.equal(await cmd(Array.from({ length: 4097 }, () => 'x')), 'command has 4097 elements: at most 4096');
    assert.equal(await cmd(['echo', 'ok', 'y'.repeat(131_072)]), "command element 3 is 131072 bytes: at most 131071 (Linux's limit for one argument)");
    assert.equal(await cmd(['echo', ...Array.from({ length: 9 }, () => 'z'.repeat(120_000))]), 'command is 1080004 bytes in all: at most 1048576');
    assert.equal(
      await insert('params', JSON.stringify('p'.repeat(131_054))),
      'params is 131056 bytes as JSON: at most 131055 (it reaches the process as one environment variable)',
    );
    assert.equal(await insert('cwd', `/${'d'.repeat(4095)}`), 'cwd is 4096 bytes: at most 4095');
    // An update is checked the same way, and only for what it changes.
    assert.equal(
      await refusal("UPDATE long_task.task SET command = $1 WHERE id = $2", [Array.from({ length: 5000 }, () => 'x'), p]),
      'command has 5000 elements: at most 4096',
    );
    // At each limit: accepted.
    const ok = await db.query(
      "INSERT INTO long_task.task (command, state_id, group_id, params, cwd, depends_on) VALUES ($1, 'AW', 77, $2, $3, $4) RETURNING id",
      [['echo', 'y'.repeat(131_071), ...Array.from({ length: 4094 }, () => 'x')], JSON.stringify('p'.repeat(131_053)), `/${'d'.repeat(4094)}`, Array.from({ length: 1000 }, () => p)],
    );
    assert.equal(ok.rowCount, 1);
  });

  it('a run whose end the database refuses ends CF result_rejected; the rest of its batch is written', async () => {
    // A realistic refusal: the owner's own trigger, which keeps secrets out of stored output.
    await db.query(`CREATE OR REPLACE FUNCTION public.no_secrets() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN
        IF NEW.output LIKE '%secret%' THEN RAISE EXCEPTION 'task % may not store a secret in its output', NEW.id; END IF;
        RETURN NEW;
      END $$`);
    await db.query('CREATE TRIGGER no_secrets BEFORE UPDATE ON long_task.task FOR EACH ROW WHEN (new.output IS DISTINCT FROM old.output) EXECUTE FUNCTION public.no_secrets()');
    try {
      const node = await startNode(db, { workerId: 2, groupId: 5, maxTasks: 8 });
      const rejected = countEvents(node, 'results:rejected');
      const retries = countEvents(node, 'results:retry');
      const dir = tempDir('rejected');
      const good = await Promise.all([1, 2, 3, 4, 5, 6].map(() => addTask(db, gated(dir, 'echo ok'), { group: 5 })));
      const bad = await addTask(db, gated(dir, 'echo the secret is 42; exit 4'), { group: 5 });
      // All seven running, then ended together: their ends go out in a batch or two.
      await until(() => node.running === 7, 'the seven tasks to run');
      writeFileSync(`${dir}/go`, '');
      await waitEnded(db, [...good, bad], 30_000);
      assert.deepEqual(await states(good), { 'CS completed': 6 });
      for (const id of good) assert.equal((await getTask(db, id)).output, 'ok\n');
      const t = await getTask(db, bad);
      assert.deepEqual([t.state_id, t.end_reason, t.exit_code, t.output], ['CF', 'result_rejected', 4, '']);
      assert.equal(t.error, `Result rejected by the database: task ${bad} may not store a secret in its output`);
      const { rows: runs } = await db.query('SELECT end_reason, error FROM long_task.task_run WHERE task_id = $1', [bad]);
      assert.deepEqual(runs, [{ end_reason: 'result_rejected', error: t.error }]);
      assert.equal(rejected.count, 1, 'rejected (and logged) once');
      assert.equal(retries.count, 0, 'no batch was held back for a retry');
      rejected.stop();
      retries.stop();
    } finally {
      await db.query('DROP TRIGGER no_secrets ON long_task.task');
    }
  });

  it('splits a refused batch down to the rows that fail alone; any other error is thrown, for a retry', async () => {
    const refused = (id: number): Error => Object.assign(new Error(`row ${id} refused`), { code: 'P0001' });
    const written: number[] = [];
    const rejected: number[] = [];
    let statements = 0;
    await writeBisected(
      Array.from({ length: 16 }, (_, i) => i + 1),
      (part) => {
        statements++;
        const bad = part.find((id) => id === 5 || id === 12);
        if (bad !== undefined) return Promise.reject(refused(bad));
        written.push(...part);
        return Promise.resolve();
      },
      (id, error) => {
        assert.equal(error.message, `row ${id} refused`);
        rejected.push(id);
      },
    );
    assert.deepEqual(written.sort((a, b) => a - b), [1, 2, 3, 4, 6, 7, 8, 9, 10, 11, 13, 14, 15, 16]);
    assert.deepEqual(rejected, [5, 12]);
    assert.ok(statements <= 1 + 2 * 2 * Math.log2(16), `${statements} statements`);
    const down = Object.assign(new Error('connection terminated'), { code: '57P01' });
    let calls = 0;
    await assert.rejects(
      writeBisected([1, 2, 3], () => {
        calls++;
        return Promise.reject(down);
      }, () => assert.fail('nothing is rejected for a server error')),
      /connection terminated/,
    );
    assert.equal(calls, 1, 'not split: the whole batch is tried again later');
  });
});
