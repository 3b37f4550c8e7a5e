import { mkdtempSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before } from 'node:test';
import pino from 'pino';
import { TaskNode } from '../../src/node/node.js';
import { NODE_DEFAULTS, type NodeOptions } from '../../src/node/options.js';
import { isProcessGroupAlive, killProcessGroup } from '../../src/node/process/process-group.js';
import type { SpawnerMode } from '../../src/node/process/spawner.js';
import { createTestDatabase, type TestDatabase } from './db.js';
import { until } from './wait.js';

export const testLogger = pino({ level: process.env.PGTASKS_TEST_LOG ?? 'silent' });

export function tempDir(label: string): string {
  return mkdtempSync(path.join(os.tmpdir(), `pg-tasks-${label}-`));
}

const started = new Set<TaskNode>();

/** Stops every node a test started and left running (a failed test must not hang the file). */
export async function stopAllNodes(): Promise<void> {
  await Promise.all([...started].map((node) => node.shutdown('cancel', 'test cleanup')));
  started.clear();
}

/**
 * Starts an in-process node on the test database and waits until it holds its lease.
 * `subscribe` is called before the node starts, for a test that must see its first events.
 */
export async function startNode(db: TestDatabase, overrides: Partial<NodeOptions> = {}, subscribe?: (node: TaskNode) => void): Promise<TaskNode> {
  const node = new TaskNode({
    ...NODE_DEFAULTS,
    connectionString: db.url,
    schema: 'long_task',
    workerId: 1,
    nodeName: 'test-node',
    rootDir: os.tmpdir(),
    killGraceMs: 2_000,
    logger: testLogger,
    migrate: false,
    // CI runs the suite once with the spawn helper (auto) and once with child_process (node).
    spawner: (process.env.PGTASKS_SPAWNER as SpawnerMode | undefined) ?? 'auto',
    ...overrides,
  });
  started.add(node);
  subscribe?.(node);
  await node.start();
  await until(() => node.state === 'active' || node.state === 'standby', 'the node to take its lease');
  return node;
}

/**
 * The file's database, made before its tests; after them, the nodes a test left running are
 * stopped and the database is closed. Use it in tests and hooks (it exists from before() on).
 */
export function useTestDatabase(label: string, options: { migrate?: boolean; setup?: (db: TestDatabase) => Promise<unknown> } = {}): TestDatabase {
  let db: TestDatabase | null = null;
  // setup (e.g. the file's node) runs in the same hook: Node 20 starts a file's top-level
  // before() hooks without waiting for the one registered before (seen: a second hook ran
  // while the database was still being made).
  before(async () => {
    db = await createTestDatabase(label, options);
    await options.setup?.(db);
  });
  after(async () => {
    await stopAllNodes();
    await db?.close();
  });
  const current = (): TestDatabase => {
    if (!db) throw new Error(`the ${label} test database is made in before(): use it in tests and hooks`);
    return db;
  };
  return {
    get url() {
      return current().url;
    },
    get name() {
      return current().name;
    },
    get pool() {
      return current().pool;
    },
    query: (sql, values) => current().query(sql, values),
    close: () => current().close(),
  };
}

/** Waits until every listed task is in a state starting with C. */
export async function waitEnded(db: TestDatabase, ids: number[], timeoutMs = 30_000): Promise<void> {
  await until(
    async () => {
      const { rows } = await db.query<{ n: number }>(
        "SELECT count(*)::int AS n FROM long_task.task WHERE id = ANY($1) AND state_id NOT LIKE 'C%'",
        [ids],
      );
      return rows[0]!.n === 0;
    },
    `tasks ${ids.length > 5 ? `${ids.slice(0, 5).join(',')}…` : ids.join(',')} to end`,
    timeoutMs,
  );
}

/** A task's columns a test may set, beyond its command; the rest keep their defaults. */
export interface TaskFields {
  priority?: number;
  state?: string;
  group?: number;
  cwd?: string;
  params?: unknown;
  /** worker_id: pinned to that worker. */
  worker?: number | null;
  dependsOn?: number[] | null;
  /** concurrency_key */
  key?: string | null;
  recoverPolicy?: string | null;
  /** An interval, e.g. '30 seconds'. */
  timeout?: string | null;
  maxAttempts?: number | null;
  /** An interval, e.g. '200 ms'. */
  backoffBase?: string | null;
  runAs?: string | null;
  limits?: { memory_max?: number; cpu_seconds_max?: number; open_files_max?: number; pids_max?: number };
}

/** Columns written only when a test sets them. */
const OPTIONAL_COLUMNS = {
  worker: 'worker_id', dependsOn: 'depends_on', key: 'concurrency_key', recoverPolicy: 'recover_policy', timeout: 'timeout',
  maxAttempts: 'max_attempts', backoffBase: 'backoff_base', runAs: 'run_as',
} as const;

/** Inserts one task (waiting, group 0, unless told otherwise); returns its id. */
export async function addTask(db: TestDatabase, command: string[], extra: TaskFields = {}): Promise<number> {
  const columns = ['command', 'priority', 'state_id', 'group_id', 'cwd', 'params'];
  const values: unknown[] = [command, extra.priority ?? 0, extra.state ?? 'AW', extra.group ?? 0, extra.cwd ?? null, extra.params === undefined ? null : JSON.stringify(extra.params)];
  for (const [field, column] of Object.entries(OPTIONAL_COLUMNS)) {
    const value = extra[field as keyof typeof OPTIONAL_COLUMNS];
    if (value === undefined) continue;
    columns.push(column);
    values.push(value);
  }
  for (const column of ['memory_max', 'cpu_seconds_max', 'open_files_max', 'pids_max'] as const) {
    const value = extra.limits?.[column];
    if (value === undefined) continue;
    columns.push(column);
    values.push(value);
  }
  const { rows } = await db.query<{ id: string }>(
    `INSERT INTO long_task.task (${columns.join(', ')}) VALUES (${values.map((_, i) => `$${i + 1}`).join(', ')}) RETURNING id`,
    values,
  );
  return Number(rows[0]!.id);
}

/** n tasks alike, one statement each (so each is notified on its own, as separate inserts are). */
export async function addTasks(db: TestDatabase, n: number, command: string[], extra: TaskFields = {}): Promise<number[]> {
  const ids: number[] = [];
  for (let i = 0; i < n; i++) ids.push(await addTask(db, command, extra));
  return ids;
}

export async function getTask(db: TestDatabase, id: number): Promise<Record<string, unknown>> {
  const { rows } = await db.query('SELECT * FROM long_task.task WHERE id = $1', [id]);
  return rows[0] as Record<string, unknown>;
}

/** A worker row; its terms (bigint in SQL) as numbers. */
export interface WorkerRow {
  id: number;
  group_id: number;
  active: boolean;
  stop: number;
  node_name: string | null;
  lease_epoch: number;
  locked_until: Date;
  lease_taken: Date;
  lock_pid: number | null;
  old_epoch: number | null;
  old_until: Date | null;
  standby_node: string | null;
  standby_seen: Date | null;
  [column: string]: unknown;
}

/** The worker row, or undefined while no node has written it. */
export async function getWorker(db: TestDatabase, id: number): Promise<WorkerRow | undefined> {
  const { rows } = await db.query<WorkerRow>('SELECT * FROM long_task.worker WHERE id = $1', [id]);
  const row = rows[0];
  if (!row) return undefined;
  return { ...row, lease_epoch: Number(row.lease_epoch), old_epoch: row.old_epoch === null ? null : Number(row.old_epoch) };
}

/** The pids of the tasks that taskPid saw, for a file's after() to kill what a failed test left. */
export const taskPids = new Set<number>();

/**
 * Waits until the task's row has a pid (one other than `other`: a new run's) and returns it.
 */
export async function taskPid(db: TestDatabase, id: number, what: string, options: { other?: number; timeoutMs?: number } = {}): Promise<number> {
  const pid = Number(await until(async () => {
    const p = Number((await getTask(db, id)).pid ?? 0);
    return p !== (options.other ?? 0) ? p : 0;
  }, what, options.timeoutMs ?? 30_000));
  taskPids.add(pid);
  return pid;
}

/** Kills the process group of every task taskPid saw that still lives. */
export function killTaskGroups(): void {
  for (const pid of taskPids) if (isProcessGroupAlive(pid)) killProcessGroup(pid, 'SIGKILL');
  taskPids.clear();
}

/**
 * Makes an AW task look claimed by `worker` under term `epoch`, as a node's claim leaves it.
 * `live`: with its run (attempt 1) marked live on that worker; `startedAgo`: an interval.
 */
export async function markClaimed(db: TestDatabase, id: number, worker: number, epoch: number, options: { live?: boolean; startedAgo?: string } = {}): Promise<void> {
  const set = ["state_id = 'AE'", 'worker_id = $2', 'lease_epoch = $3'];
  const values: unknown[] = [id, worker, epoch];
  if (options.live) set.push('attempt = 1', 'live_worker_id = $2', 'live_epoch = $3');
  if (options.startedAgo !== undefined) {
    values.push(options.startedAgo);
    set.push('started = now() - $4::interval');
  }
  await db.query(`UPDATE long_task.task SET ${set.join(', ')} WHERE id = $1`, values);
}
