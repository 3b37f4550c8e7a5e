// Turns errors from the driver and the database into one line a person can act on.

interface PgLikeError {
  code?: string;
  message?: string;
  detail?: string;
  address?: string;
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
    case '23503':
      return e.detail ? `${e.message}: ${e.detail}` : e.message;
    default:
      return e.message || e.name;
  }
}
