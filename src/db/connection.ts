import pg from 'pg';

// bigint ids (int8) come back as strings by default; task ids stay far below 2^53.
pg.types.setTypeParser(pg.types.builtins.INT8, (value) => Number(value));

export interface ConnectionOptions {
  /** A postgres:// URL. Defaults to DATABASE_URL; without it, the standard PG* variables apply. */
  connectionString?: string | undefined;
  /** Schema holding the tables. Defaults to PGTASKS_SCHEMA or long_task. */
  schema?: string | undefined;
}

export const DEFAULT_SCHEMA = 'long_task';

export function resolveSchema(schema?: string): string {
  const name = schema ?? process.env.PGTASKS_SCHEMA ?? DEFAULT_SCHEMA;
  // Any name PostgreSQL accepts as an identifier works: it is always quoted.
  if (name.length === 0 || Buffer.byteLength(name) > 63) {
    throw new Error(`invalid schema name "${name}": 1 to 63 bytes`);
  }
  return name;
}

export function poolConfig(options: ConnectionOptions, extra: pg.PoolConfig = {}): pg.PoolConfig {
  const connectionString = options.connectionString ?? process.env.DATABASE_URL;
  return {
    ...(connectionString ? { connectionString } : {}),
    application_name: 'pg-tasks',
    connectionTimeoutMillis: 10_000,
    ...extra,
  };
}

export function clientConfig(options: ConnectionOptions): pg.ClientConfig {
  const connectionString = options.connectionString ?? process.env.DATABASE_URL;
  return {
    ...(connectionString ? { connectionString } : {}),
    application_name: 'pg-tasks',
    connectionTimeoutMillis: 10_000,
  };
}

/** Quotes an identifier for the one place SQL text is substituted: the schema name. */
export function quoteIdent(name: string): string {
  return `"${name.replace(/"/g, '""')}"`;
}

/**
 * pool.connect() for a transaction, safe against the connection dying between two statements.
 * The pool listens for errors only on idle clients: a checked-out client whose server
 * connection is terminated while no query runs emits 'error' with no listener, which crashes
 * the process. Here the error is kept (the next statement fails anyway) and the client is
 * released as broken, so the pool discards it.
 */
export async function checkoutClient(pool: pg.Pool): Promise<pg.PoolClient> {
  const client = await pool.connect();
  let lost: Error | undefined;
  const onError = (error: Error): void => {
    lost = error;
  };
  client.on('error', onError);
  const release = client.release.bind(client);
  client.release = (err?: Error | boolean): void => {
    client.off('error', onError);
    release(err ?? lost);
  };
  return client;
}

/**
 * Runs fn in one transaction on a client of the pool (checkoutClient): COMMIT when it
 * returns, ROLLBACK when it throws. `begin` may carry a first parameterless statement along
 * with BEGIN, in the same round trip.
 */
export async function withTransaction<T>(pool: pg.Pool, fn: (client: pg.PoolClient) => Promise<T>, begin = 'BEGIN'): Promise<T> {
  const client = await checkoutClient(pool);
  try {
    await client.query(begin);
    const result = await fn(client);
    await client.query('COMMIT');
    return result;
  } catch (error) {
    await client.query('ROLLBACK').catch(() => undefined);
    throw error;
  } finally {
    client.release();
  }
}
