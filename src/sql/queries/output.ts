// The typed statements of output.sql: live output, written by the node, read by the rest.
import type { OutputChunk } from '../../client/output.js';
import { statement } from '../../db/statement.js';

export const appendOutput = statement<{
  /** The new chunks, one element each. */
  taskIds: number[];
  attempts: number[];
  seqs: number[];
  positions: number[];
  data: Buffer[];
  /** The runs trimmed, one element each: chunks below keepFrom are deleted. */
  trimTaskIds: number[];
  trimAttempts: number[];
  keepFrom: number[];
  channel: string;
  payload: string;
}, { added: number; trimmed: number }>({
  taskIds: true, attempts: true, seqs: true, positions: true, data: true, trimTaskIds: true, trimAttempts: true, keepFrom: true, channel: true, payload: true,
});

/** afterSeq −1: from the first chunk kept. */
export const readOutput = statement<{ taskId: number; attempt: number; afterSeq: number; limit: number }, OutputChunk>({
  taskId: true, attempt: true, afterSeq: true, limit: true,
});

/** attempt null: the latest run. */
export const outputRun = statement<{ taskId: number; attempt: number | null }, { id: number; group_id: number; latest: number; attempt: number; live: boolean }>({
  taskId: true, attempt: true,
});
