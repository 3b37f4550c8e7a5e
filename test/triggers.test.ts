// The rules the database enforces for every writer (design §2–§3), exercised with plain SQL
// and no node: a task is moved into AE the way a node does it, by an UPDATE from AW.
import assert from 'node:assert/strict';
import { after, before, beforeEach, describe, it } from 'node:test';
import pg from 'pg';
import { createTestDatabase, type TestDatabase } from './helpers/db.js';
import { addTask } from './helpers/node.js';
import { until } from './helpers/wait.js';

let db: TestDatabase;
before(async () => {
  db = await createTestDatabase('triggers');
});
after(async () => {
  await db?.close();
});

async function setState(id: number, state: string): Promise<pg.QueryResult> {
  return db.query('UPDATE long_task.task SET state_id = $2 WHERE id = $1', [id, state]);
}

async function stateOf(id: number): Promise<string> {
  const { rows } = await db.query<{ state_id: string }>('SELECT state_id FROM long_task.task WHERE id = $1', [id]);
  return rows[0]!.state_id;
}

/** A task in each state, reached only through allowed transitions. */
async function taskIn(state: string): Promise<number> {
  const id = await addTask(db, ['true'], { state: state === 'DR' ? 'DR' : 'AW' });
  if (state === 'DR' || state === 'AW') return id;
  // What a node's claim does.
  await db.query("UPDATE long_task.task SET state_id = 'AE', worker_id = 1 WHERE id = $1 AND state_id = 'AW'", [id]);
  if (state === 'AE') return id;
  if (state === 'CS' || state === 'CF') {
    await setState(id, state);
    return id;
  }
  await setState(id, 'AC');
  if (state === 'CC') await setState(id, 'CC');
  assert.equal(await stateOf(id), state);
  return id;
}

/** Asserts the statement fails with a check violation whose message matches, and changes nothing. */
async function refused(id: number, sql: string, values: unknown[], message: RegExp): Promise<void> {
  const before = await db.query('SELECT * FROM long_task.task WHERE id = $1', [id]);
  await assert.rejects(db.query(sql, values), (error: pg.DatabaseError) => {
    assert.equal(error.code, '23514', error.message);
    assert.match(error.message, message);
    return true;
  });
  const afterwards = await db.query('SELECT * FROM long_task.task WHERE id = $1', [id]);
  assert.deepEqual(afterwards.rows[0], before.rows[0]);
}

const ALL = ['DR', 'AW', 'AE', 'AC', 'CS', 'CF', 'CC'] as const;

describe('insert', () => {
  it('accepts DR and AW', async () => {
    assert.equal(await stateOf(await addTask(db, ['true'], { state: 'DR' })), 'DR');
    assert.equal(await stateOf(await addTask(db, ['true'], { state: 'AW' })), 'AW');
  });

  it('defaults to DR', async () => {
    const { rows } = await db.query<{ state_id: string }>("INSERT INTO long_task.task (command) VALUES ('{true}') RETURNING state_id");
    assert.equal(rows[0]!.state_id, 'DR');
  });

  for (const state of ['AE', 'AC', 'CS', 'CF', 'CC']) {
    it(`refuses ${state} with a clear message`, async () => {
      const { rows } = await db.query<{ n: number }>('SELECT count(*)::int AS n FROM long_task.task');
      await assert.rejects(
        db.query("INSERT INTO long_task.task (state_id, command) VALUES ($1, '{true}')", [state]),
        (error: pg.DatabaseError) => {
          assert.equal(error.code, '23514');
          assert.match(error.message, new RegExp(`only be inserted in state DR or AW, not ${state}`));
          return true;
        },
      );
      const again = await db.query<{ n: number }>('SELECT count(*)::int AS n FROM long_task.task');
      assert.equal(again.rows[0]!.n, rows[0]!.n);
    });
  }

  it('refuses an unknown state with the same message', async () => {
    await assert.rejects(
      db.query("INSERT INTO long_task.task (state_id, command) VALUES ('ZZ', '{true}')"),
      /only be inserted in state DR or AW, not ZZ/,
    );
  });

  it('stamps created and last_state_change with now(), whatever the writer sent', async () => {
    const { rows } = await db.query<{ created_now: boolean; changed_now: boolean }>(
      `INSERT INTO long_task.task (command, created, last_state_change)
       VALUES ('{true}', '2001-01-01', '2001-01-01')
       RETURNING created = now() AS created_now, last_state_change = now() AS changed_now`,
    );
    assert.deepEqual(rows[0], { created_now: true, changed_now: true });
  });
});

describe('command', () => {
  for (const [label, value] of [['an empty array', '{}'], ['an empty program', '{""}'], ['a null program', '{NULL}']] as const) {
    it(`refuses ${label}`, async () => {
      await assert.rejects(
        db.query('INSERT INTO long_task.task (state_id, command) VALUES ($1, $2)', ['AW', value]),
        (error: pg.DatabaseError) => {
          assert.equal(error.code, '23514');
          assert.equal(error.constraint, 'task_command_not_empty');
          return true;
        },
      );
    });
  }

  it('refuses a null command', async () => {
    await assert.rejects(db.query("INSERT INTO long_task.task (state_id, command) VALUES ('AW', NULL)"), (error: pg.DatabaseError) => {
      assert.equal(error.code, '23502');
      return true;
    });
  });

  it('refuses emptying the command of an existing task', async () => {
    const id = await addTask(db, ['true'], { state: 'DR' });
    await refused(id, "UPDATE long_task.task SET command = '{}' WHERE id = $1", [id], /task_command_not_empty/);
  });
});

describe('cancelling (AC)', () => {
  it('turns an AW task into CC at once, with finished set', async () => {
    const id = await addTask(db, ['true'], { state: 'AW' });
    const { rows } = await db.query<{ state_id: string; finished_now: boolean }>(
      "UPDATE long_task.task SET state_id = 'AC' WHERE id = $1 RETURNING state_id, finished = now() AS finished_now",
      [id],
    );
    assert.deepEqual(rows[0], { state_id: 'CC', finished_now: true });
  });

  it('moves an AE task to AC', async () => {
    const id = await taskIn('AE');
    await setState(id, 'AC');
    assert.equal(await stateOf(id), 'AC');
  });

  it('accepts AC again on an AC task', async () => {
    const id = await taskIn('AC');
    const result = await setState(id, 'AC');
    assert.equal(result.rowCount, 1);
    assert.equal(await stateOf(id), 'AC');
  });

  for (const state of ['DR', 'CS', 'CF', 'CC']) {
    it(`refuses ${state} → AC: "can't cancel an inactive task"`, async () => {
      const id = await taskIn(state);
      await refused(id, "UPDATE long_task.task SET state_id = 'AC' WHERE id = $1", [id], /can't cancel an inactive task/);
    });
  }
});

describe('executing (AE)', () => {
  it('is entered from AW', async () => {
    const id = await addTask(db, ['true'], { state: 'AW' });
    await db.query("UPDATE long_task.task SET state_id = 'AE', worker_id = 1 WHERE id = $1", [id]);
    assert.equal(await stateOf(id), 'AE');
  });

  for (const state of ['DR', 'AC', 'CS', 'CF', 'CC']) {
    it(`refuses ${state} → AE`, async () => {
      const id = await taskIn(state);
      await refused(id, "UPDATE long_task.task SET state_id = 'AE', worker_id = 1 WHERE id = $1", [id], new RegExp(`only start executing from AW, not ${state}`));
    });
  }

  for (const state of ['AE', 'AC']) {
    it(`keeps the worker_id of an ${state} task`, async () => {
      const id = await taskIn(state);
      const message = /can't change the worker_id/;
      await refused(id, 'UPDATE long_task.task SET worker_id = 2 WHERE id = $1', [id], message);
      await refused(id, 'UPDATE long_task.task SET worker_id = NULL WHERE id = $1', [id], message);
      // Writing the same worker_id is not a change.
      const same = await db.query('UPDATE long_task.task SET worker_id = 1, priority = 3 WHERE id = $1', [id]);
      assert.equal(same.rowCount, 1);
    });

    for (const target of ['DR', 'AW']) {
      it(`refuses ${state} → ${target}`, async () => {
        const id = await taskIn(state);
        await refused(id, 'UPDATE long_task.task SET state_id = $2 WHERE id = $1', [id, target], new RegExp(`can't set task \\d+ to ${target} while it is ${state}`));
      });
    }
  }

  it('lets the worker_id of a waiting task change', async () => {
    const id = await addTask(db, ['true'], { state: 'AW' });
    await db.query('UPDATE long_task.task SET worker_id = 5 WHERE id = $1', [id]);
    await db.query('UPDATE long_task.task SET worker_id = NULL WHERE id = $1', [id]);
    assert.equal(await stateOf(id), 'AW');
  });
});

describe('ending (CS, CF, CC)', () => {
  for (const from of ['AE', 'AC']) {
    for (const to of ['CS', 'CF']) {
      it(`accepts ${from} → ${to}`, async () => {
        const id = await taskIn(from);
        await setState(id, to);
        assert.equal(await stateOf(id), to);
      });
    }
  }

  for (const from of ['DR', 'AW', 'CS', 'CF', 'CC']) {
    for (const to of ['CS', 'CF']) {
      if (from === to) continue;
      it(`refuses ${from} → ${to}`, async () => {
        const id = await taskIn(from);
        await refused(id, 'UPDATE long_task.task SET state_id = $2 WHERE id = $1', [id, to], new RegExp(`only complete or fail from AE or AC, not ${from}`));
      });
    }
  }

  it('accepts AC → CC (the process group was killed)', async () => {
    const id = await taskIn('AC');
    await setState(id, 'CC');
    assert.equal(await stateOf(id), 'CC');
  });

  it('accepts AE → CC (a node cancelling its own tasks on shutdown)', async () => {
    const id = await taskIn('AE');
    await setState(id, 'CC');
    assert.equal(await stateOf(id), 'CC');
  });

  for (const from of ['DR', 'CS', 'CF']) {
    it(`refuses ${from} → CC`, async () => {
      const id = await taskIn(from);
      await refused(id, "UPDATE long_task.task SET state_id = 'CC' WHERE id = $1", [id], /can only become cancelled while it is active/);
    });
  }
});

describe('re-queuing', () => {
  for (const from of ['CS', 'CF', 'CC', 'DR']) {
    it(`accepts ${from} → AW and clears what the last run reported`, async () => {
      const id = await taskIn(from === 'DR' ? 'DR' : 'AE');
      if (from !== 'DR') {
        await db.query(
          `UPDATE long_task.task
              SET state_id = CASE WHEN $2 = 'CC' THEN 'AC' ELSE $2 END, error = 'boom', exit_code = 3, exit_signal = 'SIGTERM',
                  output = 'some output', pid = 4242, finished = now(), lease_epoch = 9
            WHERE id = $1`,
          [id, from],
        );
        if (from === 'CC') await setState(id, 'CC');
      } else {
        await db.query("UPDATE long_task.task SET error = 'boom', output = 'x', exit_code = 1 WHERE id = $1", [id]);
      }
      assert.equal(await stateOf(id), from);
      await db.query("UPDATE long_task.task SET state_id = 'AW', worker_id = NULL WHERE id = $1", [id]);
      const { rows } = await db.query('SELECT state_id, error, exit_code, exit_signal, output, pid, finished, lease_epoch FROM long_task.task WHERE id = $1', [id]);
      assert.deepEqual(rows[0], {
        state_id: 'AW', error: null, exit_code: null, exit_signal: null, output: null, pid: null, finished: null, lease_epoch: null,
      });
    });
  }

  it('keeps the error of a task that is not entering AW', async () => {
    const id = await taskIn('AE');
    await db.query("UPDATE long_task.task SET state_id = 'CF', error = 'boom' WHERE id = $1", [id]);
    await db.query("UPDATE long_task.task SET state_id = 'DR' WHERE id = $1", [id]);
    const { rows } = await db.query<{ error: string }>('SELECT error FROM long_task.task WHERE id = $1', [id]);
    assert.equal(rows[0]!.error, 'boom');
  });
});

describe('last_state_change', () => {
  it('is stamped by every state change and by nothing else', async () => {
    const id = await addTask(db, ['true'], { state: 'DR' });
    const old = '2001-01-01T00:00:00.000Z';
    // A non-state update keeps whatever the column holds, even a value written by hand.
    await db.query('UPDATE long_task.task SET last_state_change = $2 WHERE id = $1', [id, old]);
    const read = async (): Promise<Date> =>
      (await db.query<{ t: Date }>('SELECT last_state_change AS t FROM long_task.task WHERE id = $1', [id])).rows[0]!.t;
    await db.query("UPDATE long_task.task SET priority = 5, params = '{\"a\":1}', error = 'x' WHERE id = $1", [id]);
    assert.equal((await read()).toISOString(), old);
    // Writing the same state is not a change either.
    await db.query("UPDATE long_task.task SET state_id = 'DR' WHERE id = $1", [id]);
    assert.equal((await read()).toISOString(), old);

    for (const [state, sql] of [
      ['AW', "UPDATE long_task.task SET state_id = 'AW' WHERE id = $1"],
      ['AE', "UPDATE long_task.task SET state_id = 'AE', worker_id = 1 WHERE id = $1"],
      ['AC', "UPDATE long_task.task SET state_id = 'AC' WHERE id = $1"],
      ['CC', "UPDATE long_task.task SET state_id = 'CC' WHERE id = $1"],
    ] as const) {
      await db.query('UPDATE long_task.task SET last_state_change = $2 WHERE id = $1', [id, old]);
      const { rows } = await db.query<{ state_id: string; stamped: boolean }>(`${sql} RETURNING state_id, last_state_change = now() AS stamped`, [id]);
      assert.deepEqual(rows[0], { state_id: state, stamped: true });
    }
  });

  it('is stamped when AW → AC turns into CC', async () => {
    const id = await addTask(db, ['true'], { state: 'AW' });
    await db.query("UPDATE long_task.task SET last_state_change = '2001-01-01' WHERE id = $1", [id]);
    const { rows } = await db.query<{ stamped: boolean }>(
      "UPDATE long_task.task SET state_id = 'AC' WHERE id = $1 RETURNING last_state_change = now() AS stamped",
      [id],
    );
    assert.equal(rows[0]!.stamped, true);
  });
});

describe('foreign keys and checks', () => {
  it('refuses an unknown state_id on update', async () => {
    const id = await addTask(db, ['true'], { state: 'DR' });
    await assert.rejects(setState(id, 'ZZ'), (error: pg.DatabaseError) => {
      assert.equal(error.code, '23503');
      assert.match(error.message, /task_state/);
      return true;
    });
    assert.equal(await stateOf(id), 'DR');
  });

  it('refuses an unknown shed_period_id', async () => {
    await assert.rejects(
      db.query("INSERT INTO long_task.task (command, shed_period_id, shed_period_count) VALUES ('{true}', 'XXX', 1)"),
      (error: pg.DatabaseError) => {
        assert.equal(error.code, '23503');
        assert.match(error.message, /period/);
        return true;
      },
    );
    const id = await addTask(db, ['true'], { state: 'DR' });
    await assert.rejects(db.query("UPDATE long_task.task SET shed_period_id = 'YR' WHERE id = $1", [id]), (error: pg.DatabaseError) => {
      assert.equal(error.code, '23503');
      return true;
    });
  });

  it('accepts every period of the seed', async () => {
    for (const period of ['SEC', 'MIN', 'HOU', 'DAY', 'WEE', 'MON']) {
      await db.query("INSERT INTO long_task.task (command, shed_period_id, shed_period_count) VALUES ('{true}', $1, 1)", [period]);
    }
  });

  it('refuses a worker stop code outside 0–3', async () => {
    await db.query('INSERT INTO long_task.worker (id, stop) VALUES (900, 3)');
    for (const stop of [4, -1]) {
      await assert.rejects(db.query('INSERT INTO long_task.worker (id, stop) VALUES (901, $1)', [stop]), (error: pg.DatabaseError) => {
        assert.equal(error.code, '23514');
        assert.equal(error.constraint, 'worker_stop_code');
        return true;
      });
      await assert.rejects(db.query('UPDATE long_task.worker SET stop = $1 WHERE id = 900', [stop]), (error: pg.DatabaseError) => {
        assert.equal(error.constraint, 'worker_stop_code');
        return true;
      });
    }
    const { rows } = await db.query<{ stop: number }>('SELECT stop FROM long_task.worker WHERE id = 900');
    assert.equal(rows[0]!.stop, 3);
  });
});

describe('transitions table', () => {
  // Every pair of states, against what design §3 allows; a compact net under the cases above.
  const allowed = new Set([
    'DR>AW', 'DR>DR',
    'AW>DR', 'AW>AW', 'AW>AE', 'AW>AC', 'AW>CC',
    'AE>AE', 'AE>AC', 'AE>CS', 'AE>CF', 'AE>CC',
    'AC>AC', 'AC>CS', 'AC>CF', 'AC>CC',
    'CS>DR', 'CS>AW', 'CS>CS', 'CF>DR', 'CF>AW', 'CF>CF', 'CC>DR', 'CC>AW', 'CC>CC',
  ]);
  it('allows exactly the transitions of the lifecycle', async () => {
    const wrong: string[] = [];
    for (const from of ALL) {
      for (const to of ALL) {
        const id = await taskIn(from);
        const ok = await setState(id, to).then(
          () => true,
          () => false,
        );
        if (ok !== allowed.has(`${from}>${to}`)) wrong.push(`${from}>${to} ${ok ? 'accepted' : 'refused'}`);
      }
    }
    assert.deepEqual(wrong, []);
  });
});

describe('notifications', () => {
  let listener: pg.Client;
  const received: Array<Record<string, unknown>> = [];
  let sentinel = 0;

  before(async () => {
    listener = new pg.Client({ connectionString: db.url });
    await listener.connect();
    listener.on('notification', (message) => {
      if (message.channel === 'long_task' && message.payload) received.push(JSON.parse(message.payload) as Record<string, unknown>);
    });
    await listener.query('LISTEN long_task');
  });
  after(async () => {
    await listener?.end();
  });
  beforeEach(async () => {
    // Anything left over from the setup of the previous test arrives before this sentinel.
    await drain();
  });

  /** Sends a sentinel after everything committed so far and returns what arrived before it. */
  async function drain(): Promise<Array<Record<string, unknown>>> {
    const n = ++sentinel;
    await db.query("SELECT pg_notify('long_task', json_build_object('e', 'sentinel', 'n', $1::int)::text)", [n]);
    await until(() => received.some((p) => p.e === 'sentinel' && p.n === n), `sentinel ${n}`);
    const index = received.findIndex((p) => p.e === 'sentinel' && p.n === n);
    return received.splice(0, index + 1).filter((p) => p.e !== 'sentinel');
  }

  it('sends one "queued" for an insert of 100 000 waiting tasks in one group', async () => {
    const result = await db.query(
      "INSERT INTO long_task.task (group_id, state_id, command) SELECT 7, 'AW', '{true}' FROM generate_series(1, 100000)",
    );
    assert.equal(result.rowCount, 100_000);
    assert.deepEqual(await drain(), [{ e: 'queued', g: 7 }]);
  });

  it('sends one "queued" per group for an insert spanning groups 1, 2, 3', async () => {
    await db.query(
      "INSERT INTO long_task.task (group_id, state_id, command) SELECT g, 'AW', '{true}' FROM generate_series(1, 3) g, generate_series(1, 100)",
    );
    const got = await drain();
    assert.equal(got.length, 3);
    assert.deepEqual(
      got.map((p) => p.g as number).sort(),
      [1, 2, 3],
    );
    assert.ok(got.every((p) => p.e === 'queued'));
  });

  it('sends nothing for drafts', async () => {
    await db.query("INSERT INTO long_task.task (group_id, state_id, command) SELECT 8, 'DR', '{true}' FROM generate_series(1, 1000)");
    assert.deepEqual(await drain(), []);
  });

  it('sends no per-row flood when 100 000 waiting tasks are cancelled', async () => {
    const result = await db.query("UPDATE long_task.task SET state_id = 'AC' WHERE group_id = 7 AND state_id = 'AW'");
    assert.equal(result.rowCount, 100_000);
    const got = await drain();
    assert.ok(got.length <= 3, JSON.stringify(got));
    const { rows } = await db.query<{ n: number }>("SELECT count(*)::int AS n FROM long_task.task WHERE group_id = 7 AND state_id = 'CC'");
    assert.equal(rows[0]!.n, 100_000);
  });

  it('sends "queued" when tasks are re-queued', async () => {
    await db.query("UPDATE long_task.task SET state_id = 'AW', worker_id = NULL WHERE group_id = 8");
    assert.deepEqual(await drain(), [{ e: 'queued', g: 8 }]);
  });

  it('sends one "cancel" per worker when executing tasks are cancelled', async () => {
    const ids: number[] = [];
    for (const worker of [31, 31, 32]) {
      const id = await addTask(db, ['true'], { state: 'AW', group: 9 });
      await db.query("UPDATE long_task.task SET state_id = 'AE', worker_id = $2 WHERE id = $1", [id, worker]);
      ids.push(id);
    }
    await drain();
    await db.query("UPDATE long_task.task SET state_id = 'AC' WHERE id = ANY($1)", [ids]);
    const got = await drain();
    assert.deepEqual(
      got.map((p) => `${String(p.e)}:${String(p.w)}`).sort(),
      ['cancel:31', 'cancel:32'],
    );
  });

  it('notifies a worker stop-code change, not a lease renewal', async () => {
    await db.query('INSERT INTO long_task.worker (id, active, locked_until) VALUES (77, true, now())');
    assert.deepEqual(await drain(), [{ e: 'worker', w: 77 }]);

    await db.query('UPDATE long_task.worker SET stop = 1 WHERE id = 77');
    assert.deepEqual(await drain(), [{ e: 'worker', w: 77 }]);

    await db.query("UPDATE long_task.worker SET locked_until = now() + interval '20 seconds' WHERE id = 77");
    assert.deepEqual(await drain(), []);

    await db.query('UPDATE long_task.worker SET task_count = 4 WHERE id = 77');
    assert.deepEqual(await drain(), []);

    await db.query('UPDATE long_task.worker SET active = false WHERE id = 77');
    assert.deepEqual(await drain(), [{ e: 'worker', w: 77 }]);
  });
});
