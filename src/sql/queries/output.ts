// The typed statements of output.sql: live output, written by the node, read by the rest.
import type { OutputChunk } from '../../client/output.js';
import { columns, mappedStatement, statement } from '../../db/statement.js';

/** A chunk of a run's output, as the node writes it. */
export interface NewChunk {
  taskId: number;
  attempt: number;
  seq: number;
  /** Byte offset of the chunk's first byte in the run's whole output. */
  pos: number;
  data: Buffer;
}

/** A run whose chunks below keepFrom are deleted. */
export interface Trim {
  taskId: number;
  attempt: number;
  keepFrom: number;
}

export const appendOutput = mappedStatement<{ chunks: NewChunk[]; trims: Trim[]; channel: string; notifyIds: number[] | null }, {
  taskIds: number[];
  attempts: number[];
  seqs: number[];
  positions: number[];
  data: Buffer[];
  trimTaskIds: number[];
  trimAttempts: number[];
  keepFrom: number[];
  channel: string;
  /** The task ids to name; null: more than 100, "look again". */
  notifyIds: number[] | null;
}, { added: number; trimmed: number }>({
  taskIds: true, attempts: true, seqs: true, positions: true, data: true, trimTaskIds: true, trimAttempts: true, keepFrom: true, channel: true, notifyIds: true,
}, ({ chunks, trims, channel, notifyIds }) => ({
  ...columns(chunks, { taskIds: (c) => c.taskId, attempts: (c) => c.attempt, seqs: (c) => c.seq, positions: (c) => c.pos, data: (c) => c.data }),
  ...columns(trims, { trimTaskIds: (t) => t.taskId, trimAttempts: (t) => t.attempt, keepFrom: (t) => t.keepFrom }),
  channel,
  notifyIds,
}));

/** afterSeq −1: from the first chunk kept. */
export const readOutput = statement<{ taskId: number; attempt: number; afterSeq: number; limit: number }, OutputChunk>({
  taskId: true, attempt: true, afterSeq: true, limit: true,
});

/** attempt null: the latest run. */
export const outputRun = statement<{ taskId: number; attempt: number | null }, { id: number; group_id: number; latest: number; attempt: number; live: boolean }>({
  taskId: true, attempt: true,
});
