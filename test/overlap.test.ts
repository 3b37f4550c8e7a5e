// Overlap policies of cloned schedules: a schedule every second of a task that runs 3 s, one
// per policy. The copies' processes record when two of a schedule's are alive at once.
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import { runCli } from './helpers/cli.js';
import { getTask, startNode, tempDir, useTestDatabase } from './helpers/node.js';
import { until } from './helpers/wait.js';

const G = 80;
const db = useTestDatabase('overlap', { setup: (db) => startNode(db, { workerId: 80, groupId: G, maxTasks: 12, killGraceMs: 1_000 }) });

/** Holds dir/lock while it runs (released on SIGTERM too); a second live copy records "overlap". */
function copyScript(dir: string): string[] {
  return ['sh', '-c', `if mkdir "$0/lock" 2>/dev/null; then trap 'rmdir "$0/lock"; exit 143' TERM; echo start >> "$0/starts"; sleep 3; rmdir "$0/lock"; else echo overlap >> "$0/anomalies"; sleep 3; fi`, dir];
}

describe('schedule overlap policies', () => {
  it('allow overlaps; skip, queue and cancel_previous never run two copies at once, each in its own way', async () => {
    const policies = ['allow', 'skip', 'queue', 'cancel_previous'] as const;
    const dirs = new Map(policies.map((p) => [p, tempDir(`overlap-${p}`)]));
    const parents = new Map<string, number>();
    const dirOf = (policy: string): string => dirs.get(policy as (typeof policies)[number])!;
    for (const policy of policies) {
      const command = copyScript(dirs.get(policy)!);
      const { rows } = await db.query<{ id: string }>("INSERT INTO long_task.task (state_id, group_id, command) VALUES ('DR', $1, $2) RETURNING id", [G, command]);
      const id = Number(rows[0]!.id);
      parents.set(policy, id);
      const result = await runCli(db.url, ['schedule', String(id), '--every', '1s', '--clone', '--overlap', policy]);
      assert.equal(result.code, 0, result.stderr);
    }
    const copies = async (policy: string): Promise<Record<string, number>> => {
      const { rows } = await db.query<{ state_id: string; n: number }>(
        'SELECT state_id, count(*)::int AS n FROM long_task.task WHERE shed_parent_id = $1 GROUP BY 1', [parents.get(policy)]);
      return Object.fromEntries(rows.map((r) => [r.state_id, r.n]));
    };
    const overlaps = (policy: string): number => {
      const file = `${dirOf(policy)}/anomalies`;
      return existsSync(file) ? readFileSync(file, 'utf8').trim().split('\n').length : 0;
    };
    const skips = async (policy: string): Promise<number> => Number((await getTask(db, parents.get(policy)!)).shed_skip_count);
    const total = (counts: Record<string, number>): number => Object.values(counts).reduce((a, b) => a + b, 0);

    // Slots until each policy has had the occasion to show itself (a copy still running when
    // the next slot comes), however slowly a loaded machine goes; then no more copies, and
    // those made end.
    await until(async () => overlaps('allow') > 0 && (await skips('skip')) > 0 && (await skips('queue')) > 0 &&
      total(await copies('queue')) >= 2 && ((await copies('cancel_previous')).CC ?? 0) >= 1, 'every policy to meet an overlapping slot', 60_000);
    for (const id of parents.values()) await runCli(db.url, ['unschedule', String(id)]);
    await until(async () => (await db.query(
      "SELECT 1 FROM long_task.task WHERE shed_parent_id = ANY($1) AND (state_id IN ('AW', 'AE', 'AC', 'DR') OR live_worker_id IS NOT NULL)",
      [[...parents.values()]])).rowCount === 0, 'every copy to end', 60_000);

    assert.ok(overlaps('allow') > 0, 'allow: copies ran at once');
    assert.ok((await skips('allow')) === 0);

    assert.equal(overlaps('skip'), 0, 'skip: never two at once');
    assert.ok((await skips('skip')) > 0, 'skip: slots counted as skipped');
    assert.deepEqual(Object.keys(await copies('skip')), ['CS']);

    assert.equal(overlaps('queue'), 0, 'queue: never two at once');
    assert.ok((await skips('queue')) > 0, 'queue: a slot that finds a copy waiting is skipped');
    const queued = await copies('queue');
    assert.deepEqual(Object.keys(queued), ['CS']);
    assert.ok(queued.CS! >= 2, 'queue: the waiting copy ran after the first');

    assert.equal(overlaps('cancel_previous'), 0, 'cancel_previous: the new copy starts once the old one is gone');
    const cancelled = await copies('cancel_previous');
    assert.ok((cancelled.CC ?? 0) >= 1, `cancel_previous: earlier copies cancelled (${JSON.stringify(cancelled)})`);
  });

  it('refuses an unknown policy at the CLI and in SQL', async () => {
    const bad = await runCli(db.url, ['schedule', '1', '--every', '1h', '--clone', '--overlap', 'sometimes']);
    assert.equal(bad.code, 1);
    assert.equal(bad.stderr, 'pg-tasks: --overlap: "sometimes" is not one of allow, skip, queue, cancel_previous\n');
    await assert.rejects(db.query("INSERT INTO long_task.task (state_id, command, shed_overlap) VALUES ('DR', '{true}', 'sometimes')"), /task_shed_overlap_valid/);
  });
});
