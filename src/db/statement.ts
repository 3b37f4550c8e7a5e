import type pg from 'pg';
import { loadQueries } from './queries.js';

/** Anything a statement can be sent on: the pool, or a client inside a transaction. */
export type Queryable = Pick<pg.ClientBase, 'query'>;

export interface Result<R> {
  rows: R[];
  rowCount: number;
}

/** Each parameter of P named once, none missing and none extra: checked against the SQL at load. */
type ParamNames<P> = { [K in keyof P]-?: true };

/**
 * One named statement of src/sql/queries: the parameters it takes (I, turned into the named
 * parameters of the SQL by toParams) and the rows it returns (R).
 */
export interface Statement<I, R> {
  readonly params: readonly string[];
  /** Sent as a named prepared statement: each pooled connection parses and plans it once. */
  readonly prepared: boolean;
  readonly toParams: (input: I) => object;
  /** Never set: it only carries R to the bound function's type. */
  readonly row?: R;
}

/** A statement bound to a schema: call it with a connection and its parameters. */
export type Bound<I, R> = ([keyof I] extends [never] ? (db: Queryable) => Promise<Result<R>> : (db: Queryable, params: I) => Promise<Result<R>>) & {
  /** The SQL text sent, $n numbered (for EXPLAIN and for the BEGIN of a transaction). */
  readonly text: string;
  /** The values sent for these parameters, in $n order. */
  readonly values: (params: I) => unknown[];
};

export type BoundAll<D> = { [K in keyof D]: D[K] extends Statement<infer I, infer R> ? Bound<I, R> : never };

export function statement<P extends object, R = never>(params: ParamNames<P>, options: { prepared?: boolean } = {}): Statement<P, R> {
  return { params: Object.keys(params), prepared: options.prepared ?? false, toParams: (input) => input };
}

/** A statement whose parameters are built from a friendlier input, e.g. columns from a list of rows. */
export function mappedStatement<I, P extends object, R = never>(params: ParamNames<P>, toParams: (input: I) => P, options: { prepared?: boolean } = {}): Statement<I, R> {
  return { params: Object.keys(params), prepared: options.prepared ?? false, toParams };
}

/** The columns of a list of rows, one array per column, for `unnest($1::bigint[], $2::int[], …)`. */
export function columns<T, C extends Record<string, (item: T) => unknown>>(items: readonly T[], pick: C): { [K in keyof C]: Array<ReturnType<C[K]>> } {
  const out: Record<string, unknown[]> = {};
  for (const [key, get] of Object.entries(pick)) out[key] = items.map(get);
  return out as { [K in keyof C]: Array<ReturnType<C[K]>> };
}

/**
 * Binds every statement to the SQL of `schema`. Throws when a statement is missing from the
 * .sql files, one there has no definition, or the parameters named in TypeScript and in the
 * SQL differ: a renamed parameter fails at start-up, not at its first call.
 */
export function bindStatements<D extends Record<string, Statement<never, unknown>>>(schema: string, definitions: D, options: { named?: boolean } = {}): BoundAll<D> {
  // Unnamed: no statement is prepared by name, so a transaction pooler (which may send each
  // statement to another server connection) never sees one twice or misses it.
  const named = options.named ?? true;
  const queries = loadQueries(schema);
  for (const name of queries.keys()) {
    if (!(name in definitions)) throw new Error(`query ${name} has no typed statement`);
  }
  const bound: Record<string, unknown> = {};
  for (const [name, def] of Object.entries(definitions)) {
    const query = queries.get(name);
    if (!query) throw new Error(`query ${name} is missing from the .sql files`);
    const declared = [...def.params].sort().join(', ');
    const used = [...query.params].sort().join(', ');
    if (declared !== used) throw new Error(`query ${name}: the SQL uses (${used}), its statement declares (${declared})`);
    bound[name] = bind(`${name}:${schema}`, def as Statement<unknown, unknown>, query.text, query.params, named);
  }
  return bound as BoundAll<D>;
}

function bind(preparedName: string, def: Statement<unknown, unknown>, text: string, names: string[], named: boolean): Bound<unknown, unknown> {
  const prepared = def.prepared && named;
  const values = (input: unknown): unknown[] => {
    const params = def.toParams(input ?? {}) as Record<string, unknown>;
    return names.map((n) => params[n]);
  };
  // No parameters: no values array, so the statement goes by the simple protocol as before.
  const run = async (db: Queryable, input?: unknown): Promise<Result<unknown>> => {
    const result: pg.QueryResult = prepared
      ? await db.query({ name: preparedName, text, values: values(input) })
      : names.length === 0 ? await db.query(text) : await db.query(text, values(input));
    return { rows: result.rows, rowCount: result.rowCount ?? 0 };
  };
  return Object.assign(run, { text, values });
}
