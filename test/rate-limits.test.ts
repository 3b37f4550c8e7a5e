// Rate limits on a concurrency key (issue 30, migration 27): concurrency_limit.max_starts per
// period. A window of the period never holds more than max_starts starts of the key, across
// every node and group; tasks held back by the rate start when the window frees a start, woken
// by the node's timer (the claim's wake_ms), not by polling.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { NodeEventMap } from '../src/node/events.js';
import type { TaskNode } from '../src/node/node.js';
import { loadStatements } from '../src/sql/queries/index.js';
import { runCli } from './helpers/cli.js';
import { addTasks, startNode, useTestDatabase } from './helpers/node.js';
import { until } from './helpers/wait.js';

const db = useTestDatabase('rate_limits');
const claimTasks = loadStatements('long_task').claimTasks;

type Claim = NodeEventMap['claim'][0];

async function fakeWorker(id: number, group: number): Promise<void> {
  await db.query("INSERT INTO long_task.worker (id, group_id, active, locked_until, lease_epoch) VALUES ($1, $2, true, now() + interval '1 hour', 1)", [id, group]);
}

async function claim(worker: number, group: number, free: number) {
  const { rows } = await claimTasks(db.pool, { groupId: group, workerId: worker, freeSlots: free, epoch: 1, nodeName: 'fake', checkCommands: false });
  return { claimed: rows.filter((r) => r.id !== null).map((r) => Number(r.id)), wakeMs: rows[0]?.wake_ms ?? null };
}

describe('rate limits on a concurrency key', () => {
  it('the claim takes up to max_starts per window, says when the window frees a start, and takes more once it has', async () => {
    await fakeWorker(100, 10);
    await db.query("INSERT INTO long_task.concurrency_limit (key, max_running, max_starts, period) VALUES ('api', 10, 3, '2 seconds')");
    const ids = await addTasks(db, 5, ['true'], { group: 10, key: 'api' });
    const unkeyed = await addTasks(db, 2, ['true'], { group: 10, priority: 5 });
    const first = await claim(100, 10, 10);
    // Three of the key (the rate), and the unkeyed tasks behind them are not held back.
    assert.deepEqual(first.claimed.sort((a, b) => a - b), [...ids.slice(0, 3), ...unkeyed]);
    const { rows: starts } = await db.query<{ n: number }>("SELECT count(*)::int AS n FROM long_task.concurrency_start WHERE key = 'api'");
    assert.equal(starts[0]!.n, 3, 'each start of a rated key is recorded');
    // Nothing more this window: no task, and when to ask again (within the period).
    const second = await claim(100, 10, 10);
    assert.deepEqual(second.claimed, []);
    assert.ok(second.wakeMs !== null && second.wakeMs > 0 && second.wakeMs <= 2_000, `wake_ms ${second.wakeMs}`);
    // Move the window: the recorded starts are 2 s older, as if 2 s had passed.
    await db.query("UPDATE long_task.concurrency_start SET started = started - interval '2 seconds'");
    const third = await claim(100, 10, 10);
    assert.deepEqual(third.claimed.sort((a, b) => a - b), ids.slice(3));
    // The old starts left the window and were pruned; the two new ones are recorded.
    const { rows: left } = await db.query<{ n: number }>("SELECT count(*)::int AS n FROM long_task.concurrency_start WHERE key = 'api'");
    assert.equal(left[0]!.n, 2);
    // max_running still holds beside the rate: 5 live runs, max_running lowered to 5.
    await db.query("UPDATE long_task.concurrency_limit SET max_running = 5 WHERE key = 'api'");
    await db.query("UPDATE long_task.concurrency_start SET started = started - interval '2 seconds'");
    await addTasks(db, 1, ['true'], { group: 10, key: 'api' });
    const fourth = await claim(100, 10, 10);
    assert.deepEqual(fourth.claimed, []);
    assert.equal(fourth.wakeMs, null, 'held back by max_running, not by the rate: a run\'s end wakes the node, not a timer');
  });

  it('3 per 2 s across two nodes of two groups: at most 3 starts in any window, the rest woken by a timer, no polling', async () => {
    await db.query("INSERT INTO long_task.concurrency_limit (key, max_running, max_starts, period) VALUES ('mail', 20, 3, '2 seconds')");
    // Long sleeps: no run ends, so no notification wakes a node; only its timer can.
    const ids = [
      ...(await addTasks(db, 4, ['sleep', '60'], { group: 21, key: 'mail' })),
      ...(await addTasks(db, 4, ['sleep', '60'], { group: 22, key: 'mail' })),
    ];
    const claims: Claim[] = [];
    let renewals = 0;
    const listen = (node: TaskNode): void => {
      node.events.on('claim', (e: Claim) => claims.push(e));
      node.events.on('lease:renewed', () => renewals++);
    };
    // A renewal also hints a claim when tasks wait (every half lease): with leases of 120 s,
    // none comes before the tasks should all have started, so only the timer can wake them.
    await startNode(db, { workerId: 211, groupId: 21, maxTasks: 8, leaseSeconds: 120 }, listen);
    await startNode(db, { workerId: 221, groupId: 22, maxTasks: 8, leaseSeconds: 120 }, listen);
    // Liveness bound only: 8 starts at 3 per 2 s take about 4 s.
    await until(async () => {
      const { rows } = await db.query<{ n: number }>('SELECT count(*)::int AS n FROM long_task.task WHERE id = ANY($1) AND started IS NOT NULL', [ids]);
      assert.equal(renewals, 0, 'the tasks held back by the rate were still waiting at a lease renewal: no timer woke the nodes');
      return rows[0]!.n === ids.length;
    }, 'every rated task to start', 60_000);
    const { rows } = await db.query<{ started: Date }>('SELECT started FROM long_task.task WHERE id = ANY($1) ORDER BY started', [ids]);
    const at = rows.map((r) => +r.started);
    // Any 4 consecutive starts span at least the period: no window of 2 s holds 4.
    for (let i = 0; i + 3 < at.length; i++) assert.ok(at[i + 3]! - at[i]! >= 2_000, `starts ${at.map((t) => t - at[0]!).join(',')} ms`);
    // Without polling: the nodes claim on their start, and then only when a timer says the
    // window moved (twice here, per node), with a claim or two more each that finds the key
    // held back. A node polling at any pace under 1 s would claim more than this in the 4 s.
    const empty = claims.filter((c) => c.asked > 0 && c.claimed === 0).length;
    assert.ok(claims.length <= 14, `claims: ${claims.map((c) => c.claimed).join(',')}`);
    assert.ok(empty <= 8, `claims that took nothing: ${empty}`);
  });

  it('refuses a rate with no period, a period of 0 and max_starts of 0; the CLI sets, lists and removes a rate', async () => {
    await assert.rejects(db.query("INSERT INTO long_task.concurrency_limit (key, max_running, max_starts) VALUES ('x', 1, 3)"), /concurrency_limit_rate_valid/);
    await assert.rejects(db.query("INSERT INTO long_task.concurrency_limit (key, max_running, max_starts, period) VALUES ('x', 1, 3, '0 s')"), /concurrency_limit_period_valid/);
    await assert.rejects(db.query("INSERT INTO long_task.concurrency_limit (key, max_running, max_starts, period) VALUES ('x', 1, 0, '1 s')"), /concurrency_limit_max_starts_valid/);

    const set = await runCli(db.url, ['limit', '--key', 'sms', '--starts', '10/1m', '--json']);
    assert.equal(set.code, 0, set.stderr);
    const [row] = JSON.parse(set.stdout) as Array<Record<string, unknown>>;
    assert.deepEqual([row!.name, row!.max_running, row!.max_starts, row!.period_seconds], ['sms', 1, 10, 60]);
    // A max_running given beside it keeps the rate; the table shows both.
    const both = await runCli(db.url, ['limit', '5', '--key', 'sms']);
    assert.equal(both.code, 0, both.stderr);
    assert.match(both.stdout, /sms\s+5\s+.*10\/60s/);
    const bad = await runCli(db.url, ['limit', '--key', 'sms', '--starts', '10']);
    assert.equal(bad.code, 1);
    assert.match(bad.stderr, /^pg-tasks: .*--starts/);
    assert.equal(bad.stderr.trim().split('\n').length, 1);
    const off = await runCli(db.url, ['limit', '--key', 'sms', '--starts', 'none', '--json']);
    assert.equal(off.code, 0, off.stderr);
    const [after] = JSON.parse(off.stdout) as Array<Record<string, unknown>>;
    assert.deepEqual([after!.max_running, after!.max_starts, after!.period_seconds], [5, null, null]);
  });
});
