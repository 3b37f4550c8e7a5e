// The typed statements of limits.sql.
import type { Limit } from '../../client/types.js';
import { statement } from '../../db/statement.js';

export const setGroupLimit = statement<{ groupId: number; maxRunning: number | null }, { id: number; max_running: number | null }>({ groupId: true, maxRunning: true });
export const setKeyLimit = statement<{ key: string; maxRunning: number }, { key: string; max_running: number }>({ key: true, maxRunning: true });
export const setKeyRate = statement<{ key: string; maxStarts: number | null; periodSeconds: number | null }, { key: string; max_running: number; max_starts: number | null }>({ key: true, maxStarts: true, periodSeconds: true });
export const deleteKeyLimit = statement<{ key: string }, { key: string }>({ key: true });
export const listLimits = statement<Record<never, never>, Limit>({});
