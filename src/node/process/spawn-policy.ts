import type { NodeOptions } from '../options.js';
import { RunAs } from './run-as.js';
import { TaskEnv } from './task-env.js';
import type { SpawnPolicy } from './task-process.js';

/**
 * The node's rules for what its tasks get, built once at start (the allow list resolved, the
 * environment read), and logged: which variables every task gets, who they may run as, and
 * and which limits. Values are never logged, only names. (Whether runs get cgroups is logged
 * by the spawn helper, which makes the node's.)
 */
export async function spawnPolicy(o: NodeOptions): Promise<SpawnPolicy> {
  const env = new TaskEnv({ passEnv: o.passEnv ?? [], env: o.env ?? {} });
  const runAs = await RunAs.create({ allowRunAs: o.allowRunAs ?? [], allowRunAsRoot: o.allowRunAsRoot ?? false });
  o.logger.info(
    { env: env.names(), runAs: runAs.describe(), limits: 'setrlimit (memory_max, cpu_seconds_max, open_files_max, pids_max)' },
    'task environment: clean; run_as and limits in force',
  );
  return { env, runAs };
}
