// The claim's plan (src/sql/queries/task.sql, fragment claim) on a backlog the statistics do
// not know: it must read the head of its waiting index, not every waiting task of the group.
// Version 29's index on (group_id, state_id) misled it so (migration 33 dropped it).
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { loadStatements } from '../src/sql/queries/index.js';
import { useTestDatabase } from './helpers/node.js';

const db = useTestDatabase('claim-plan');
const claimTasks = loadStatements('long_task').claimTasks;

interface PlanNode {
  'Node Type': string;
  'Relation Name'?: string;
  'Index Name'?: string;
  'Actual Rows'?: number;
  'Actual Loops'?: number;
  Plans?: PlanNode[];
}

function* nodes(node: PlanNode): Generator<PlanNode> {
  yield node;
  for (const child of node.Plans ?? []) yield* nodes(child);
}

describe('the claim', () => {
  it('reads a few rows of its waiting index on a burst of 50 000 tasks into a table never analyzed', async () => {
    const client = await db.pool.connect();
    try {
      await client.query(`INSERT INTO long_task.task (state_id, command) SELECT 'AW', '{true}' FROM generate_series(1, 50000)`);
      await client.query('BEGIN');
      // A live lease for the claiming worker, only inside this transaction (rolled back).
      await client.query(`INSERT INTO long_task.worker (id, group_id, active, locked_until, lease_epoch) VALUES (901, 0, true, now() + interval '1 minute', 1)`);
      const { rows } = await client.query<{ 'QUERY PLAN': Array<{ Plan: PlanNode }> }>(
        `EXPLAIN (ANALYZE, FORMAT JSON) ${claimTasks.text}`,
        claimTasks.values({ groupId: 0, workerId: 901, freeSlots: 32, epoch: 1, nodeName: 'plan', checkCommands: false }),
      );
      await client.query('ROLLBACK');
      const all = [...nodes(rows[0]!['QUERY PLAN'][0]!.Plan)];
      const scans = all.filter((n) => n['Relation Name'] === 'task' && /Scan/.test(n['Node Type']));
      const waiting = scans.find((n) => n['Index Name'] === 'task_waiting_any_idx');
      assert.ok(waiting, `the claim reads task_waiting_any_idx (its scans of task: ${scans.map((n) => `${n['Node Type']} ${n['Index Name'] ?? ''}`).join('; ')})`);
      assert.equal(waiting['Actual Rows'], 32, 'and takes the 32 it has room for from its head');
      const read = Math.max(...scans.map((n) => (n['Actual Rows'] ?? 0) * (n['Actual Loops'] ?? 1)));
      assert.ok(read <= 32, `no scan of task read more than the 32 claimed (the most: ${read})`);
    } finally {
      client.release();
    }
  });
});
