import { mkdtempSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import pino from 'pino';
import { TaskNode } from '../../src/node/node.js';
import { NODE_DEFAULTS, type NodeOptions } from '../../src/node/options.js';
import type { SpawnerMode } from '../../src/node/process/spawner.js';
import type { TestDatabase } from './db.js';
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

export async function addTask(db: TestDatabase, command: string[], extra: { priority?: number; state?: string; group?: number; cwd?: string; params?: unknown } = {}): Promise<number> {
  const { rows } = await db.query<{ id: number }>(
    'INSERT INTO long_task.task (command, priority, state_id, group_id, cwd, params) VALUES ($1, $2, $3, $4, $5, $6) RETURNING id',
    [command, extra.priority ?? 0, extra.state ?? 'AW', extra.group ?? 0, extra.cwd ?? null, extra.params === undefined ? null : JSON.stringify(extra.params)],
  );
  return Number(rows[0]!.id);
}

export async function getTask(db: TestDatabase, id: number): Promise<Record<string, unknown>> {
  const { rows } = await db.query('SELECT * FROM long_task.task WHERE id = $1', [id]);
  return rows[0] as Record<string, unknown>;
}
