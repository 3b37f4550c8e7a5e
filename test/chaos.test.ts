// Chaos: PostgreSQL restarted under a running cluster loses no task and no node; then about
// 45 s of seeded chaos (nodes SIGKILLed, SIGTERMed, cut off from the database, each restarted)
// never runs two live processes of one task and leaves every task ended. Real PostgreSQL, real
// node processes; bounds are liveness bounds only.
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, readFileSync, rmSync } from 'node:fs';
import { after, describe, it } from 'node:test';
import pg from 'pg';
import { migrate } from '../src/db/migrate.js';
import { startEmbedded, type EmbeddedServer } from '../src/embedded/index.js';
import { isProcessGroupAlive, killProcessGroup } from '../src/node/process/process-group.js';
import { ROOT } from './helpers/cli.js';
import { createTestDatabase, type TestDatabase } from './helpers/db.js';
import { addTask, startNode, stopAllNodes, tempDir } from './helpers/node.js';
import { proxyFor, type Proxy } from './helpers/proxy.js';
import { until } from './helpers/wait.js';

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

after(async () => {
  await stopAllNodes();
});

async function stateCounts(db: Pick<TestDatabase, 'query'>, group: number): Promise<Array<{ state_id: string; error: string | null; n: number }>> {
  const { rows } = await db.query<{ state_id: string; error: string | null; n: number }>(
    'SELECT state_id, error, count(*)::int AS n FROM long_task.task WHERE group_id = $1 GROUP BY 1, 2 ORDER BY 1, 2',
    [group],
  );
  return rows;
}

describe('PostgreSQL restarted under a running cluster', () => {
  const LEASE = 30;
  it('loses no task, keeps both nodes active (a standby does not take over), and the listeners reconnect', async (t) => {
    const G = 5;
    const dataDir = tempDir('chaos-pg');
    let server: EmbeddedServer | null = await startEmbedded({ dataDir, fast: true });
    const port = server.port;
    const pool = new pg.Pool({ connectionString: server.urlFor('pgt_restart'), max: 4 });
    // Connections the restart cuts: the next query opens a new one.
    pool.on('error', () => undefined);
    let inserting = true;
    let inserter: Promise<void> = Promise.resolve();
    const watch: NodeJS.Timeout[] = [];
    try {
      const admin = new pg.Client({ connectionString: server.url });
      await admin.connect();
      await admin.query('CREATE DATABASE pgt_restart TEMPLATE template0');
      await admin.end();
      const c = await pool.connect();
      try {
        await migrate(c, 'long_task');
      } finally {
        c.release();
      }
      const db: TestDatabase = {
        url: server.urlFor('pgt_restart'),
        name: 'pgt_restart',
        pool,
        query: (sql, values) => pool.query(sql, values),
        close: () => pool.end(),
      };
      // A 30 s lease: the restart must fit in it with the reconnect, and on a loaded machine
      // (CI beside other jobs, load 13) the embedded server alone took 7 s to start again.
      const nodes = await Promise.all(
        [1, 2].map((i) => startNode(db, { workerId: 50 + i, groupId: G, maxTasks: 4, leaseSeconds: LEASE, nodeName: `restart-${i}` })),
      );
      for (const node of nodes) assert.equal(node.state, 'active');
      // A restart ends every session, the holder's lock session too: its standby must not
      // read that as the holder's death (see LockSession's grace).
      const standby = await startNode(db, { workerId: 51, groupId: G, maxTasks: 4, leaseSeconds: LEASE, nodeName: 'restart-standby' });
      assert.equal(standby.state, 'standby');
      const { rows: [term] } = await pool.query<{ lease_epoch: string }>('SELECT lease_epoch FROM long_task.worker WHERE id = 51');
      const leftActive = new Set<number>();
      watch.push(setInterval(() => nodes.forEach((node, i) => node.state !== 'active' && leftActive.add(i + 1)), 10));

      // Tasks keep coming, before, during and after the outage; inserts that fail are retried.
      let inserted = 0;
      let insertErrors = 0;
      inserter = (async () => {
        while (inserting) {
          try {
            await pool.query("INSERT INTO long_task.task (command, group_id, state_id) VALUES ('{sleep,0.2}', $1, 'AW')", [G]);
            inserted++;
          } catch {
            insertErrors++;
          }
          await sleep(100);
        }
      })();
      await until(async () => (await pool.query("SELECT 1 FROM long_task.task WHERE state_id = 'CS'")).rowCount! >= 5, 'tasks to flow', 30_000);

      const stoppedAt = performance.now();
      await server.stop();
      server = null;
      const downAt = performance.now();
      await sleep(2_000);
      server = await startEmbedded({ dataDir, port, fast: true });
      const upAt = performance.now();
      t.diagnostic(`server stopped in ${Math.round(downAt - stoppedAt)} ms, down 2000 ms, started in ${Math.round(upAt - downAt - 2_000)} ms: unreachable for ${Math.round(upAt - stoppedAt)} ms`);
      await sleep(2_000);
      inserting = false;
      await inserter;

      await until(async () => (await pool.query("SELECT 1 FROM long_task.task WHERE state_id NOT LIKE 'C%'")).rowCount === 0, 'every task to end', 60_000);
      const states = await stateCounts(db, G);
      const total = states.reduce((sum, r) => sum + r.n, 0);
      t.diagnostic(`${inserted} inserts acknowledged, ${insertErrors} failed during the outage; ${total} task rows: ${states.map((r) => `${r.state_id}${r.error ? ` (${r.error})` : ''}=${r.n}`).join(' ')}`);
      assert.ok(total >= inserted);
      assert.deepEqual(states, [{ state_id: 'CS', error: null, n: total }], 'every task ends CS');

      // The listeners are back (LISTEN is their last statement), and a task inserted now runs.
      await until(async () => (await pool.query(
        "SELECT 1 FROM pg_stat_activity WHERE datname = current_database() AND query LIKE 'LISTEN%'",
      )).rowCount === 3, 'the three listeners (the standby\'s too) to reconnect', 30_000);
      const lateAt = performance.now();
      const late = await addTask(db, ['true'], { group: G });
      await until(async () => (await pool.query("SELECT 1 FROM long_task.task WHERE id = $1 AND state_id = 'CS'", [late])).rowCount === 1, 'the task inserted after the restart to run', 30_000);
      t.diagnostic(`a task inserted after the restart ran in ${Math.round(performance.now() - lateAt)} ms (renewals every 5 s)`);

      for (const node of nodes) assert.equal(node.state, 'active');
      const { rows: workers } = await pool.query<{ id: number; active: boolean }>('SELECT id, active FROM long_task.worker WHERE id IN (51, 52) ORDER BY id');
      assert.deepEqual(workers, [{ id: 51, active: true }, { id: 52, active: true }]);
      const { rows: [held] } = await pool.query<{ lease_epoch: string; node_name: string }>('SELECT lease_epoch, node_name FROM long_task.worker WHERE id = 51');
      assert.deepEqual(held, { lease_epoch: term!.lease_epoch, node_name: 'restart-1' }, 'the standby took over a holder that lived through the restart');
      assert.equal(standby.state, 'standby');
      // Not asserted: an outage that begins just before a renewal may outlast the fence (7 s after the last renewal).
      t.diagnostic(leftActive.size === 0 ? 'both nodes stayed active throughout' : `nodes ${[...leftActive].join(', ')} left the active state during the outage`);
    } finally {
      inserting = false;
      await inserter;
      for (const timer of watch) clearInterval(timer);
      await stopAllNodes();
      await pool.end().catch(() => undefined);
      await server?.stop();
      rmSync(dataDir, { recursive: true, force: true });
    }
  });
});

/** A small seeded PRNG (mulberry32): the same seed gives the same sequence of choices. */
function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let x = a;
    x = Math.imul(x ^ (x >>> 15), x | 1);
    x ^= x + Math.imul(x ^ (x >>> 7), x | 61);
    return ((x ^ (x >>> 14)) >>> 0) / 4294967296;
  };
}

interface ChaosNode {
  index: number;
  workerId: number;
  proxy: Proxy;
  url: string;
  child: ChildProcess | null;
  exited: Promise<void>;
  busy: boolean;
  output: string;
}

/**
 * Each task holds a lock named after it while it runs (flock -n: it fails at once if another
 * live process of the same task holds it; the kernel releases a dead holder's lock). A second
 * live process of one task writes a line to `anomalies`. No `exec` before flock: it would
 * replace the shell and the `||` branch could never run.
 */
const TASK_SCRIPT =
  'flock -n -E 75 "$0/$PG_TASKS_TASK_ID.lock" sh -c "echo \\$PG_TASKS_TASK_ID >> $0/runs; sleep 0.3"; rc=$?; ' +
  '[ $rc -ne 75 ] || echo "DOUBLE $PG_TASKS_TASK_ID" >> $0/anomalies; exit $rc';

describe('seeded chaos', () => {
  it('never runs one task twice at once, and every task ends CS (or CF for a lost claim or its timeout), with retries and timeouts in the mix', async (t) => {
    const seed = Number(process.env.PGTASKS_CHAOS_SEED ?? 1337);
    t.diagnostic(`seed ${seed} (PGTASKS_CHAOS_SEED=${seed} repeats this run's choices)`);
    const rand = mulberry32(seed);
    const between = (lo: number, hi: number): number => lo + rand() * (hi - lo);
    const G = 60;
    const dir = tempDir('chaos');
    const db = await createTestDatabase('chaos');
    const nodes: ChaosNode[] = [];
    const actions: Array<Promise<void>> = [];
    const figures = { tasks: 0, slow: 0, kills: 0, terms: 0, cuts: 0, longCuts: 0, skipped: 0, startupExits: 0 };
    let inserting = true;
    let inserter: Promise<void> = Promise.resolve();

    const start = (node: ChaosNode): void => {
      const env: NodeJS.ProcessEnv = { ...process.env, DATABASE_URL: node.url };
      delete env.NODE_TEST_CONTEXT;
      delete env.PGTASKS_SCHEMA;
      const child = spawn(process.execPath, [
        '--import', 'tsx', 'src/cli/main.ts', 'node',
        '--worker-id', String(node.workerId), '--group', String(G), '--max-tasks', '4', '--lease', '3s',
        // Drain on SIGTERM: the running tasks end CS instead of being cancelled.
        '--shutdown', 'drain',
        '--no-migrate', '--log-level', 'warn', '--name', `chaos-${node.index}`,
      ], { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] });
      const keep = (chunk: Buffer): void => {
        node.output = (node.output + chunk.toString()).slice(-6_000);
      };
      child.stdout.on('data', keep);
      child.stderr.on('data', keep);
      node.output += `--- started pid ${child.pid}\n`;
      node.child = child;
      node.exited = new Promise((resolve) => child.once('exit', () => resolve()));
    };
    /** Ends a node by its pid: `signal`, then SIGKILL if it has not exited within `graceMs`. */
    const stop = async (node: ChaosNode, signal: NodeJS.Signals, graceMs = 30_000): Promise<void> => {
      const child = node.child;
      if (!child) return;
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
      const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
      await node.exited;
      clearTimeout(timer);
      node.output += `--- pid ${child.pid} ended (${signal})\n`;
      node.child = null;
    };
    /**
     * A node cut off while it starts gives up with a one-line error (exit 1), as it should: it
     * is restarted, as its supervisor would. Any other exit fails the check after the chaos.
     */
    const restartIfGaveUp = async (node: ChaosNode): Promise<void> => {
      if (node.child?.exitCode === 1 && /\npg-tasks: [^\n]+\n$/.test(node.output)) {
        figures.startupExits++;
        await stop(node, 'SIGTERM');
        start(node);
      }
    };
    const running = async (): Promise<number> => {
      const { rows } = await db.query<{ n: number }>('SELECT count(*)::int AS n FROM long_task.worker WHERE id = ANY($1) AND active', [nodes.map((n) => n.workerId)]);
      return rows[0]!.n;
    };

    try {
      for (let i = 0; i < 3; i++) {
        const { proxy, url } = await proxyFor(db.url);
        nodes.push({ index: i + 1, workerId: 61 + i, proxy, url, child: null, exited: Promise.resolve(), busy: false, output: '' });
      }
      nodes.forEach(start);
      await until(async () => (await running()) === 3, 'the 3 nodes to take their leases', 60_000);

      // Retries and timeouts in the mix: every task may run 3 times (a lost claim retries), and
      // every fifth batch brings a task that outlives its timeout on each of its 2 attempts.
      inserter = (async () => {
        for (let batch = 0; inserting; batch++) {
          const { rowCount } = await db.query(
            `INSERT INTO long_task.task (command, group_id, state_id, recover_policy, max_attempts, backoff_base)
             SELECT ARRAY['sh', '-c', $2::text, $3::text], $1, 'AW', 'requeue', 3, '200 ms' FROM generate_series(1, 5)`,
            [G, TASK_SCRIPT, dir],
          );
          figures.tasks += rowCount ?? 0;
          if (batch % 5 === 0) {
            await db.query(
              `INSERT INTO long_task.task (command, group_id, state_id, recover_policy, max_attempts, backoff_base, timeout)
               VALUES ('{sleep,30}', $1, 'AW', 'requeue', 2, '200 ms', '500 ms')`,
              [G],
            );
            figures.tasks++;
            figures.slow++;
          }
          await sleep(300);
        }
      })();

      // The fence of a 3 s lease: 2.25 s after the last renewal; recoverable 5 s after it.
      const chaosEnd = performance.now() + 45_000;
      while (performance.now() < chaosEnd) {
        await sleep(between(1_000, 3_000));
        const action = rand();
        const pause = between(1_000, 6_000);
        const idle = nodes.filter((n) => !n.busy);
        if (idle.length === 0) {
          figures.skipped++;
          continue;
        }
        const node = idle[Math.floor(rand() * idle.length)]!;
        node.busy = true;
        let run: () => Promise<void>;
        if (action < 0.35) {
          figures.kills++;
          run = async () => {
            await stop(node, 'SIGKILL');
            await sleep(pause / 2);
            start(node);
          };
        } else if (action < 0.6) {
          figures.terms++;
          run = async () => {
            await stop(node, 'SIGTERM');
            await sleep(pause / 4);
            start(node);
          };
        } else {
          figures.cuts++;
          if (pause > 2_250) figures.longCuts++;
          run = async () => {
            node.proxy.pause();
            node.output += `--- cut for ${Math.round(pause)} ms\n`;
            await sleep(pause);
            node.proxy.resume();
            await restartIfGaveUp(node);
          };
        }
        actions.push(run().finally(() => {
          node.busy = false;
        }));
      }
      inserting = false;
      await inserter;
      await Promise.all(actions);
      for (const node of nodes) node.proxy.resume();
      // Each node either holds its worker again (its own pid in the row) or gave up starting.
      await until(async () => {
        const { rows } = await db.query<{ pid: number }>('SELECT pid FROM long_task.worker WHERE id = ANY($1) AND active', [nodes.map((n) => n.workerId)]);
        const holders = new Set(rows.map((r) => r.pid));
        return nodes.every((n) => !n.child || n.child.exitCode !== null || n.child.signalCode !== null || holders.has(n.child.pid!));
      }, 'every node to hold its worker again or to give up', 60_000);
      for (const node of nodes) await restartIfGaveUp(node);
      for (const node of nodes) assert.ok(node.child && node.child.exitCode === null && node.child.signalCode === null, `node ${node.index} runs`);

      const drainStart = performance.now();
      try {
        await until(async () => (await db.query("SELECT 1 FROM long_task.task WHERE group_id = $1 AND state_id IN ('AW', 'AE', 'AC')", [G])).rowCount === 0, 'every task to end', 90_000);
      } catch (error) {
        // What is stuck, and the runs and workers that should answer for it.
        const stuck = await db.query(
          `SELECT t.id, t.state_id, t.worker_id, t.attempt, t.lease_epoch,
                  (SELECT json_agg(r ORDER BY r.attempt) FROM long_task.task_run r WHERE r.task_id = t.id) AS runs
             FROM long_task.task t WHERE t.group_id = $1 AND t.state_id IN ('AW', 'AE', 'AC') ORDER BY t.id LIMIT 10`,
          [G],
        );
        const workers = await db.query('SELECT id, active, lease_epoch, locked_until, now() AS now, stop, task_count FROM long_task.worker ORDER BY id');
        t.diagnostic(`stuck: ${JSON.stringify(stuck.rows)}`);
        t.diagnostic(`workers: ${JSON.stringify(workers.rows)}`);
        throw error;
      }
      t.diagnostic(`queue drained ${Math.round((performance.now() - drainStart) / 1000)} s after the chaos ended`);

      const anomalies = existsSync(`${dir}/anomalies`) ? readFileSync(`${dir}/anomalies`, 'utf8').trim() : '';
      const states = await stateCounts(db, G);
      const count = (state: string, prefix = ''): number => states.filter((r) => r.state_id === state && (r.error ?? '').startsWith(prefix)).reduce((s, r) => s + r.n, 0);
      const runs = new Map<number, number>();
      for (const line of readFileSync(`${dir}/runs`, 'utf8').split('\n')) if (line) runs.set(Number(line), (runs.get(Number(line)) ?? 0) + 1);
      const { rows: cs } = await db.query<{ id: number }>("SELECT id FROM long_task.task WHERE group_id = $1 AND state_id = 'CS'", [G]);
      const reran = [...runs.values()].filter((n) => n > 1).length;
      t.diagnostic(
        `tasks ${figures.tasks} (${figures.slow} slow), kills ${figures.kills}, terms ${figures.terms}, cuts ${figures.cuts} (${figures.longCuts} past the fence), skipped ${figures.skipped}, exits at a cut while starting ${figures.startupExits}; ` +
          `CS ${count('CS')}, CF ${count('CF')} (Lost: ${count('CF', 'Lost:')}), tasks run more than once (not at once) ${reran}, anomalies ${anomalies ? anomalies.split('\n').length : 0}`,
      );
      t.diagnostic(`end states: ${states.map((r) => `${r.state_id}${r.error ? ` (${r.error.split('\n')[0]})` : ''}=${r.n}`).join('; ')}`);

      assert.equal(anomalies, '', 'two live processes of one task');
      assert.equal(states.reduce((s, r) => s + r.n, 0), figures.tasks);
      assert.deepEqual(
        states.filter(
          (r) => !(r.state_id === 'CS' && r.error === null) && !(r.state_id === 'CF' && /^(Lost:|timed out after 500ms)/.test(r.error ?? '')),
        ),
        [],
        'every task ends CS, or CF for a lost claim or its timeout',
      );
      const { rows: slow } = await db.query<{ state_id: string; end_reason: string; n: number }>(
        "SELECT state_id, end_reason, count(*)::int AS n FROM long_task.task WHERE group_id = $1 AND timeout IS NOT NULL GROUP BY 1, 2",
        [G],
      );
      assert.equal(slow.reduce((n, r) => n + r.n, 0), figures.slow);
      assert.deepEqual(slow.filter((r) => r.state_id !== 'CF' || !['timeout', 'lost'].includes(r.end_reason)), [], 'the slow tasks end by their timeout');
      assert.deepEqual(cs.map((r) => Number(r.id)).filter((id) => !runs.has(id)), [], 'CS tasks that never ran');
    } catch (error) {
      for (const node of nodes) t.diagnostic(`node ${node.index} output:\n${node.output}`);
      throw error;
    } finally {
      inserting = false;
      await inserter.catch(() => undefined);
      await Promise.allSettled(actions);
      for (const node of nodes) node.proxy.resume();
      await Promise.all(nodes.map((node) => stop(node, 'SIGTERM', 10_000)));
      for (const node of nodes) await node.proxy.close();
      // A task process a failed run left behind (its reaper should have ended it), by its group.
      const { rows } = await db.query<{ pid: number }>("SELECT DISTINCT pid FROM long_task.task WHERE group_id = $1 AND pid IS NOT NULL AND state_id NOT LIKE 'C%'", [G]).catch(() => ({ rows: [] }));
      for (const { pid } of rows) if (isProcessGroupAlive(Number(pid))) killProcessGroup(Number(pid), 'SIGKILL');
      await db.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
