// The typed statements of control.sql: the runs' progress from fd 3.
import { columns, mappedStatement } from '../../db/statement.js';

/** One pending progress of a run (its last values win). */
export interface RunProgress {
  id: number;
  attempt: number;
  epoch: number;
  progress: number | null;
  message: string | null;
}

export const recordProgress = mappedStatement<{ workerId: number; runs: RunProgress[] }, {
  workerId: number;
  taskIds: number[];
  attempts: number[];
  epochs: number[];
  progress: Array<number | null>;
  messages: Array<string | null>;
}>({ workerId: true, taskIds: true, attempts: true, epochs: true, progress: true, messages: true }, ({ workerId, runs }) => ({
  workerId,
  ...columns(runs, { taskIds: (r) => r.id, attempts: (r) => r.attempt, epochs: (r) => r.epoch, progress: (r) => r.progress, messages: (r) => r.message }),
}));
