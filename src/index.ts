export { TaskClient, TaskNotFoundError, StateChangeRefusedError, UniqueKeyHeldError, WaitTimeoutError } from './client/client.js';
export type { Task, TaskRun, TaskState, EndReason, DependsRule, AddTaskInput, OnDuplicate, ListOptions, Limit, AllowRule } from './client/types.js';
export { TASK_STATES } from './client/types.js';
export { TaskNode } from './node/node.js';
export type { NodeOptions, ShutdownMode } from './node/options.js';
export { NODE_DEFAULTS } from './node/options.js';
export { migrate, SchemaTooNewError } from './db/migrate.js';
export { startEmbedded } from './embedded/index.js';
