// Turns errors from the driver and the database into one line a person can act on.
import { DEFAULT_ROLE_PREFIX } from './roles.js';

interface PgLikeError {
  code?: string;
  message?: string;
  detail?: string;
  address?: string;
  /** The server's function that raised it: exec_stmt_raise for a RAISE in a PL/pgSQL function. */
  routine?: string;
  port?: number;
  errors?: unknown[];
}

const NETWORK_CODES = new Set(['ECONNREFUSED', 'ENOTFOUND', 'ETIMEDOUT', 'ECONNRESET', 'EHOSTUNREACH', 'EAI_AGAIN']);

export function describeError(error: unknown, schema?: string): string {
  if (!(error instanceof Error)) return String(error);
  const e = error as Error & PgLikeError;
  // Node reports a refused connection to several addresses as an AggregateError.
  const inner = (e.errors?.[0] ?? e) as PgLikeError;
  const code = e.code ?? inner.code;
  if (code !== undefined && NETWORK_CODES.has(code)) {
    const where = inner.address ? ` at ${inner.address}${inner.port ? `:${inner.port}` : ''}` : '';
    return `cannot reach PostgreSQL${where} (${code}): is it running? Set DATABASE_URL or the PG* variables`;
  }
  if (/timeout expired|Connection terminated due to connection timeout/i.test(e.message)) {
    return 'cannot reach PostgreSQL (connection timed out): is it running? Set DATABASE_URL or the PG* variables';
  }
  switch (code) {
    case '3D000':
    case '28P01':
    case '28000':
      return `cannot connect to PostgreSQL: ${e.message}`;
    case '42P01':
    case '3F000':
      return `the pg-tasks tables are missing${schema ? ` in schema "${schema}"` : ''}: run "pg-tasks migrate" first (${e.message})`;
    case '42501':
      // A refusal of pg-tasks' own triggers (the allowlist, a group's submit_roles) already
      // says what to do; PostgreSQL's own "permission denied for ..." gets the roles' hint.
      if (e.routine === 'exec_stmt_raise') return e.message;
      return describePermissionDenied(e.message);
    case '23503':
      return e.detail ? `${e.message}: ${e.detail}` : e.message;
    default:
      return e.message || e.name;
  }
}

// What each table's writes need (docs/security.md, "Roles"): the message names the role to
// ask for, not only the table. Reads need reader at least, so a denied read says that.
const WRITERS: Record<string, string> = {
  task: 'submitter to add, queue or cancel tasks, operator to set schedules',
  worker: 'operator to set a worker\'s stop code',
  task_group: 'admin to change groups',
  concurrency_limit: 'admin to change limits',
  task_allowlist: 'admin to change allowlists',
  task_run: 'node',
  task_output: 'node',
  maintenance: 'node',
  task_id_seq: 'submitter to add tasks',
};

function describePermissionDenied(message: string): string {
  const prefix = process.env.PGTASKS_ROLE_PREFIX ?? DEFAULT_ROLE_PREFIX;
  if (/^new row violates row-level security policy/.test(message)) return `${message}: a user writes only the tasks it owns (see docs/security.md, "Owners")`;
  // A refusal worded by a trigger (a task's owner, an allowlist) says what to do already.
  if (!/^permission denied/.test(message)) return message;
  const table = /permission denied for (?:table|relation|sequence) (\S+)/.exec(message)?.[1];
  if (table === undefined) {
    return `${message}: your database user needs one of the ${prefix}* roles, ${prefix}reader at least (see docs/security.md, "Roles")`;
  }
  const need = (WRITERS[table] ?? 'admin').replace(/^(\w+)/, `${prefix}$1`).replace(/, (\w+) to/g, `, ${prefix}$1 to`);
  return `${message}: your database user lacks the privilege; reading needs ${prefix}reader, writing needs ${need} (see docs/security.md, "Roles")`;
}
