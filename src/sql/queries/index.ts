// Every named statement of src/sql/queries, typed, bound to a schema once.
import { bindStatements, type BoundAll } from '../../db/statement.js';
import * as allowlist from './allowlist.js';
import * as dashboard from './dashboard.js';
import * as limits from './limits.js';
import * as metrics from './metrics.js';
import * as output from './output.js';
import * as retention from './retention.js';
import * as schedule from './schedule.js';
import * as task from './task.js';
import * as worker from './worker.js';

// Each module exports nothing but its statements, so a statement's name is its export's.
export const definitions = { ...allowlist, ...dashboard, ...limits, ...metrics, ...output, ...retention, ...schedule, ...task, ...worker };

export type Statements = BoundAll<typeof definitions>;

const cache = new Map<string, Statements>();

/** The statements with `schema` substituted; throws if the SQL and the TypeScript disagree. */
export function loadStatements(schema: string): Statements {
  let statements = cache.get(schema);
  if (!statements) {
    statements = bindStatements(schema, definitions);
    cache.set(schema, statements);
  }
  return statements;
}
