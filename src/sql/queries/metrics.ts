// The typed statement of metrics.sql.
import { statement } from '../../db/statement.js';

export const queueDepth = statement<Record<never, never>, { group_id: number; ready: number; delayed: number }>({});
