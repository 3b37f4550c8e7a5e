// The typed statements of install.sql.
import { statement } from '../../db/statement.js';

export const installState = statement<{ schema: string }, { schema_exists: boolean; installed: boolean }>({ schema: true });
export const installCounts = statement<Record<never, never>, { tasks: number; workers: number }>({});
export const liveWorkers = statement<Record<never, never>, { id: number; node_name: string | null }>({});
export const existingRoles = statement<{ names: string[] }, { name: string }>({ names: true });
export const outsideMembers = statement<{ names: string[] }, { role: string; member: string }>({ names: true });
