import { readFileSync, readdirSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import path from 'node:path';
import { quoteIdent } from './connection.js';

// src/db and dist/db both sit two levels below the package root; the SQL ships in src/sql.
export const SQL_DIR = fileURLToPath(new URL('../../src/sql/', import.meta.url));

const QUERY_NAMES = [
  'claimTasks', 'recordPids', 'finishRuns', 'cancelRequests', 'taskRuns', 'nextDelayedDue', 'releaseDelayed', 'insertTask', 'queueTask', 'getTasks', 'prerequisites',
  'cancelTask', 'getTask', 'listTasks',
  'ensureWorker', 'lockWorker', 'markRecovering', 'recoverWorker', 'endWorkerRuns', 'takeLease', 'renewLease', 'failOrphanRuns', 'releaseLease',
  'readWorker', 'listWorkers', 'setWorkerStop', 'markStandby',
  'lockRecoverable', 'endLapsedTerm', 'dueOldTerms', 'clearOldTerms', 'watchWorkers', 'setLockPid',
  'lockSession', 'lockSessionStart', 'unlockSession', 'awaitLockRelease', 'releaseShared',
  'upcomingSchedules', 'fireSlots', 'dueSchedules', 'markAdvancing', 'cloneScheduled', 'advanceSchedules',
  'setSchedule', 'cancelCopies', 'queueWaitingCopies', 'clearSchedule', 'listScheduled',
  'pruneTasks', 'pruneRuns', 'startRetention', 'pruneEndedBatch', 'pruneRunsBatch', 'pruneRerunRuns', 'holdRetention', 'finishRetention',
  'setGroupLimit', 'setKeyLimit', 'deleteKeyLimit', 'listLimits',
  'insertAllowRule', 'listAllowRules', 'deleteAllowRule',
  'appendOutput', 'readOutput', 'outputRun', 'queueDepth',
  'dashboardTasksNewest', 'dashboardTasksOldest', 'dashboardTasksQueue', 'dashboardDependents', 'dashboardWorkers',
  'dashboardSchedules', 'dashboardGroupRows', 'dashboardGroupCounts', 'dashboardCancel', 'dashboardQueue',
] as const;

export type QueryName = (typeof QUERY_NAMES)[number];
export type Queries = Record<QueryName, string>;

/** Splits a file of "-- name: x" blocks into named statements. */
export function parseNamedQueries(text: string): Map<string, string> {
  const queries = new Map<string, string>();
  let name: string | undefined;
  let body: string[] = [];
  const flush = (): void => {
    if (name !== undefined) queries.set(name, body.join('\n').trim().replace(/;\s*$/, ''));
  };
  for (const line of text.split('\n')) {
    const match = /^--\s*name:\s*(\w+)\s*$/.exec(line);
    if (match) {
      flush();
      name = match[1];
      body = [];
    } else if (name !== undefined) {
      body.push(line);
    }
  }
  flush();
  return queries;
}

const cache = new Map<string, Queries>();

/** Every runtime statement, with the schema identifier substituted once. */
export function loadQueries(schema: string): Queries {
  const cached = cache.get(schema);
  if (cached) return cached;
  const dir = path.join(SQL_DIR, 'queries');
  const all = new Map<string, string>();
  for (const file of readdirSync(dir).filter((f) => f.endsWith('.sql')).sort()) {
    for (const [name, sql] of parseNamedQueries(readFileSync(path.join(dir, file), 'utf8'))) {
      if (all.has(name)) throw new Error(`query ${name} is defined twice (${file})`);
      // A function, not a string: `$$` and `$&` in a replacement string are patterns.
      all.set(name, sql.replaceAll('{{schema}}', () => quoteIdent(schema)));
    }
  }
  const queries = {} as Queries;
  for (const name of QUERY_NAMES) {
    const sql = all.get(name);
    if (sql === undefined) throw new Error(`query ${name} is missing from ${dir}`);
    queries[name] = sql;
  }
  cache.set(schema, queries);
  return queries;
}
