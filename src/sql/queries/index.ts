// Every named statement of src/sql/queries, typed, bound to a schema once.
import { bindStatements, type BoundAll } from '../../db/statement.js';
import * as allowlist from './allowlist.js';
import * as bulk from './bulk.js';
import * as control from './control.js';
import * as dashboard from './dashboard.js';
import * as dashboardOverview from './dashboard-overview.js';
import * as install from './install.js';
import * as limits from './limits.js';
import * as metrics from './metrics.js';
import * as output from './output.js';
import * as retention from './retention.js';
import * as schedule from './schedule.js';
import * as task from './task.js';
import * as taskpage from './taskpage.js';
import * as worker from './worker.js';

// Each module exports nothing but its statements, so a statement's name is its export's.
export const definitions = { ...allowlist, ...bulk, ...control, ...dashboard, ...dashboardOverview, ...install, ...limits, ...metrics, ...output, ...retention, ...schedule, ...task, ...taskpage, ...worker };

export type Statements = BoundAll<typeof definitions>;

const cache = new Map<string, Statements>();

/**
 * The statements with `schema` substituted; throws if the SQL and the TypeScript disagree.
 * named: false sends none as a named prepared statement (for a pool behind a transaction pooler).
 */
export function loadStatements(schema: string, options: { named?: boolean } = {}): Statements {
  const named = options.named ?? true;
  const key = `${named ? 'named' : 'unnamed'}:${schema}`;
  let statements = cache.get(key);
  if (!statements) {
    statements = bindStatements(schema, definitions, { named });
    cache.set(key, statements);
  }
  return statements;
}
