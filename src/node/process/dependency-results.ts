import { randomBytes } from 'node:crypto';
import { chownSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { RunAsUser } from './run-as.js';

/**
 * Prerequisites' results up to this size go in PG_TASKS_DEPENDENCY_RESULTS (64 KiB: well
 * under Linux's 128 KiB limit on one environment string). Larger ones go in a file named by
 * PG_TASKS_DEPENDENCY_RESULTS_FILE, which the node removes when the run ends.
 */
export const DEPENDENCY_ENV_BYTES = 64 * 1024;

/**
 * Writes a run's prerequisites' results to a file of its own in the node's temporary
 * directory, readable only by the user the task runs as; returns its path.
 */
export function writeDependencyResults(taskId: number, attempt: number, json: string, user: RunAsUser | null): string {
  const file = path.join(os.tmpdir(), `pg-tasks-deps-${taskId}-${attempt}-${randomBytes(6).toString('hex')}.json`);
  // wx: never through a file (or link) someone placed there.
  writeFileSync(file, json, { mode: 0o600, flag: 'wx' });
  if (user) chownSync(file, user.uid, user.gid);
  return file;
}
