// The service contract (src/node/services.ts), checked on every part of a node against a real
// database: stop() before start() does nothing; start() and stop() may be called twice; once
// stop() has resolved nothing of the part fires (no statement, no timer armed, no child
// process, no connection), even when poked; and it starts again after stop().
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import pg from 'pg';
import { clientConfig } from '../src/db/connection.js';
import { Listener } from '../src/db/listener.js';
import { loadStatements } from '../src/sql/queries/index.js';
import { Claimer } from '../src/node/claim/claimer.js';
import { NodeEvents } from '../src/node/events.js';
import { Lease } from '../src/node/lease/lease.js';
import { LeaseKeeper } from '../src/node/lease/lease-keeper.js';
import { LockSession } from '../src/node/lease/lock-session.js';
import { NODE_DEFAULTS } from '../src/node/options.js';
import { isProcessGroupAlive } from '../src/node/process/process-group.js';
import { Reaper } from '../src/node/process/reaper.js';
import { SpawnHelper, type SpawnerMode } from '../src/node/process/spawner.js';
import { RecoveryWatch } from '../src/node/recovery/recovery-watch.js';
import { OutputWriter } from '../src/node/runs/output-writer.js';
import { ResultWriter } from '../src/node/runs/result-writer.js';
import { startAll, stopAll, type Service } from '../src/node/services.js';
import { DelayedTasks } from '../src/node/timers/delayed.js';
import { Retention } from '../src/node/timers/retention.js';
import { Scheduler } from '../src/node/timers/scheduler.js';
import { RunTracing } from '../src/node/tracing/run-tracing.js';
import { createTestDatabase, type TestDatabase } from './helpers/db.js';
import { testLogger as log } from './helpers/node.js';
import { until } from './helpers/wait.js';

const SCHEMA = 'long_task';
const queries = loadStatements(SCHEMA);
const events = new NodeEvents(log);
let db: TestDatabase;
let pool: pg.Pool;
/** Statements the parts sent through `pool` (and transactions they began on it). */
let statements = 0;

before(async () => {
  db = await createTestDatabase('parts');
  // No idle timer of the pool's own: every armed timer counted below is a part's.
  pool = new pg.Pool({ connectionString: db.url, max: 4, idleTimeoutMillis: 0 });
  pool.on('error', () => undefined);
  const query = pool.query.bind(pool) as (...args: unknown[]) => unknown;
  const connect = pool.connect.bind(pool) as (...args: unknown[]) => unknown;
  Reflect.set(pool, 'query', (...args: unknown[]) => {
    statements++;
    return query(...args);
  });
  Reflect.set(pool, 'connect', (...args: unknown[]) => {
    statements++;
    return connect(...args);
  });
});
after(async () => {
  await pool?.end();
  await db?.close();
});

/** Timers (and immediates) armed now, by anyone in this process. */
function armed(): number {
  return process.getActiveResourcesInfo().filter((r) => r === 'Timeout' || r === 'Immediate').length;
}

/** A few turns of the event loop: a request deferred by a part (setImmediate) has had its chance. */
async function turns(): Promise<void> {
  for (let i = 0; i < 3; i++) await new Promise((resolve) => setImmediate(resolve));
}

async function backendAlive(pid: number): Promise<boolean> {
  const { rows } = await db.query('SELECT 1 FROM pg_stat_activity WHERE pid = $1', [pid]);
  return rows.length > 0;
}

interface Case {
  service: Service;
  /** Resolves once the started part has shown it works (a statement, a connection, a child…). */
  works(): Promise<void>;
  /** Asks the part to do something, as its node would. */
  poke(): void;
  /** Resolves once what the stopped part owned outside this process (a child, a backend) is gone. */
  gone?(): Promise<void>;
}

/** One check of the contract, for one part built fresh by `build`. */
async function checkContract(build: () => Case): Promise<void> {
  const part = build();
  const baseline = armed();
  let sent = statements;
  // Stop before start: nothing happens.
  await part.service.stop();
  part.poke();
  await turns();
  assert.equal(statements, sent, 'a stopped part that never started sent a statement');
  assert.ok(armed() <= baseline, 'a part that never started armed a timer');
  for (let round = 1; round <= 2; round++) {
    // Twice: idempotent.
    await startAll([{ name: 'part', service: part.service }]);
    await part.service.start();
    await part.works();
    await stopAll([{ name: 'part', service: part.service }]);
    await part.service.stop();
    await part.gone?.();
    sent = statements;
    assert.ok(armed() <= baseline, `round ${round}: a timer is left armed after stop()`);
    part.poke();
    await turns();
    assert.equal(statements, sent, `round ${round}: a statement was sent after stop()`);
    assert.ok(armed() <= baseline, `round ${round}: a poke after stop() armed a timer`);
  }
}

describe('every part keeps the service contract', () => {
  it('output writer', async () => {
    await checkContract(() => {
      const output = new OutputWriter(pool, queries, SCHEMA, 1024, log, events);
      let attempt = 0;
      return {
        service: output,
        works: async () => {
          const before = statements;
          output.open(1, ++attempt)?.(Buffer.from('out\n'));
          await until(() => statements > before, 'the output to be written');
        },
        poke: () => output.open(1, ++attempt)?.(Buffer.from('out\n')),
      };
    });
  });

  it('result writer', async () => {
    await checkContract(() => {
      const writer = new ResultWriter(pool, queries, 1, 'parts', log, events);
      return {
        service: writer,
        works: async () => {
          const before = statements;
          writer.recordPid(1, 1, 1, 4242);
          await writer.flush(true);
          assert.ok(statements > before, 'the started writer wrote the pid');
        },
        poke: () => writer.recordPid(1, 1, 1, 4242),
      };
    });
  });

  it('claimer', async () => {
    await checkContract(() => {
      let claims = 0;
      const counting = new NodeEvents(log);
      counting.on('claim', () => claims++);
      const claimer = new Claimer(pool, queries, SCHEMA, { groupId: 0, workerId: 1, nodeName: 'parts', commands: 'any' }, log, {
        canClaim: () => true,
        freeSlots: () => 1,
        epoch: () => 1,
        start: () => undefined,
        lostClaims: () => undefined,
        takeEnds: () => [],
        endsDone: () => undefined,
        claimDone: () => undefined,
      }, counting);
      return {
        service: claimer,
        works: async () => {
          const before = claims;
          claimer.hint();
          await until(() => claims > before, 'a claim');
          await claimer.settled();
        },
        poke: () => claimer.hint(),
      };
    });
  });

  it('listener', async () => {
    await checkContract(() => {
      const listener = new Listener(clientConfig({ connectionString: db.url }), SCHEMA, log);
      let pid = 0;
      return {
        service: listener,
        works: async () => {
          assert.equal(listener.connected, true);
          pid = Number(await until(async () => (await db.query<{ pid: number }>("SELECT pid FROM pg_stat_activity WHERE query LIKE 'LISTEN%' AND datname = current_database()")).rows[0]?.pid, 'the LISTEN backend'));
        },
        poke: () => listener.reconnect(),
        gone: async () => {
          assert.equal(listener.connected, false);
          await until(async () => !(await backendAlive(pid)), 'the LISTEN backend to end');
        },
      };
    });
  });

  it('reaper', async () => {
    await checkContract(() => {
      const reaper = new Reaper();
      let pid = 0;
      return {
        service: reaper,
        works: async () => {
          pid = Number(await until(() => reaper.pid, 'the reaper process'));
        },
        poke: () => reaper.fence(1_000),
        gone: async () => {
          assert.equal(reaper.pid, undefined);
          await until(() => !isProcessGroupAlive(pid), 'the reaper to exit');
        },
      };
    });
  });

  it('spawn helper', async () => {
    const mode = (process.env.PGTASKS_SPAWNER as SpawnerMode | undefined) ?? 'auto';
    await checkContract(() => {
      const helper = new SpawnHelper(mode, log);
      let pid: number | undefined;
      return {
        service: helper,
        works: () => {
          // 'node' (or no C compiler): no helper, tasks start with child_process.
          pid = helper.current?.pid;
          if (mode === 'helper') assert.ok(pid, 'the helper runs');
          return Promise.resolve();
        },
        poke: () => undefined,
        gone: async () => {
          assert.equal(helper.current, null);
          const exited = pid;
          if (exited !== undefined) await until(() => !isProcessGroupAlive(exited), 'the spawn helper to exit');
        },
      };
    });
  });

  it('lock session', async () => {
    await checkContract(() => {
      let held: number | null = null;
      const session = new LockSession(clientConfig({ connectionString: db.url }), queries, 9, 0, log, {
        released: () => undefined,
        held: (pid) => {
          held = pid;
        },
      });
      let pid = 0;
      return {
        service: session,
        works: async () => {
          held = null;
          session.hold();
          pid = Number(await until(() => held, 'the worker lock to be held'));
        },
        poke: () => session.hold(),
        gone: async () => {
          assert.equal(session.heldPid, null);
          await until(async () => !(await backendAlive(pid)), "the lock session's backend to end");
        },
      };
    });
  });

  it('lease keeper', async () => {
    const workerId = 11;
    await checkContract(() => {
      let gained = 0;
      const session = new LockSession(clientConfig({ connectionString: db.url }), queries, workerId, 0, log, { released: () => undefined, held: () => undefined });
      const lease = new Lease(pool, queries, { ...NODE_DEFAULTS, workerId, groupId: 0, nodeName: 'parts', leaseSeconds: 2 }, log);
      const keeper = new LeaseKeeper(lease, 2, SCHEMA, log, {
        gained: () => gained++,
        standingBy: () => undefined,
        renewing: () => ({ taskCount: 0, ping: 0 }),
        renewed: () => undefined,
        lost: () => undefined,
        fenceMoved: () => undefined,
      }, session);
      return {
        service: keeper,
        works: async () => {
          const before = gained;
          await until(() => gained > before, 'the lease to be taken');
        },
        poke: () => keeper.wake(),
        // As a stopping node does once its term's work is done: the worker is free again.
        gone: () => keeper.release(false),
      };
    });
    const { rows } = await db.query<{ active: boolean }>('SELECT active FROM long_task.worker WHERE id = $1', [workerId]);
    assert.equal(rows[0]!.active, false);
  });

  for (const [name, build] of [
    ['scheduler', () => new Scheduler(pool, queries, 0, log, () => undefined, events)],
    ['delayed tasks', () => new DelayedTasks(pool, queries, 0, log)],
  ] as const) {
    it(name, async () => {
      await checkContract(() => {
        const part = build();
        return {
          service: part,
          works: async () => {
            const before = statements;
            part.rearm();
            await until(() => statements > before, 'the earliest due time to be read');
          },
          poke: () => part.rearm(),
        };
      });
    });
  }

  it('retention', async () => {
    await checkContract(() => {
      const retention = new Retention(pool, queries, 'parts', 20, log);
      return {
        service: retention,
        works: async () => {
          const before = statements;
          await until(() => statements > before, 'a retention pass');
        },
        poke: () => undefined,
      };
    });
  });

  it('tracing', async () => {
    // A parent that is not sampled: a span is begun (the SDK loaded and working), nothing is
    // recorded, so nothing is sent to a collector that the test does not have.
    const unsampled = { traceparent: '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00' };
    let attempt = 0;
    await checkContract(() => {
      const tracing = new RunTracing(events, { workerId: 1, groupId: 0, nodeName: 'parts' }, log);
      return {
        service: tracing,
        works: () => {
          const traceparent = tracing.begin({ taskId: 1, attempt: ++attempt, params: unsampled, claimedAt: performance.now() });
          assert.match(traceparent ?? '', /^00-4bf92f3577b34da6a3ce929d0e0e4736-[0-9a-f]{16}-00$/);
          events.publish('run:ended', { taskId: 1, attempt, state: 'CS', endReason: 'completed', exitCode: 0, signal: null, durationMs: 1 });
          return Promise.resolve();
        },
        poke: () => assert.equal(tracing.begin({ taskId: 1, attempt: ++attempt, params: unsampled, claimedAt: performance.now() }), null, 'a stopped tracing begins no span'),
      };
    });
  });

  it('recovery watch', async () => {
    let recovered = 0;
    await checkContract(() => {
      const watch = new RecoveryWatch(
        () => {
          recovered++;
          return Promise.resolve({ recovered: false, lapseInMs: null, oldInMs: null });
        },
        () => Promise.resolve(null),
        2_000,
        log,
      );
      return {
        service: watch,
        works: async () => {
          const before = recovered;
          watch.update([{ id: 99, lapse: 1, old: null }]);
          await until(() => recovered > before, 'the watched worker to be checked');
        },
        poke: () => watch.update([{ id: 99, lapse: 1, old: null }]),
      };
    });
  });
});
