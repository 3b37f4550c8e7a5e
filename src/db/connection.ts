import pg from 'pg';
import type { ServerGuard } from './server-guard.js';

// bigint ids (int8) come back as strings by default; task ids stay far below 2^53.
pg.types.setTypeParser(pg.types.builtins.INT8, (value) => Number(value));

export interface ConnectionOptions {
  /** A postgres:// URL. Defaults to DATABASE_URL; without it, the standard PG* variables apply. */
  connectionString?: string | undefined;
  /** Schema holding the tables. Defaults to PGTASKS_SCHEMA or long_task. */
  schema?: string | undefined;
  /**
   * Where the connections that need a session of their own go (LISTEN, the worker lock
   * session, migrations): PGTASKS_SESSION_URL, else the connection string. Set it when the
   * connection string goes through a transaction pooler (docs/production.md).
   */
  sessionUrl?: string | undefined;
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

/** libpq's target_session_attrs: which server of a host list a connection keeps. */
export const SESSION_ATTRS = ['any', 'read-write', 'read-only', 'primary', 'standby', 'prefer-standby'] as const;
export type SessionAttrs = (typeof SESSION_ATTRS)[number];

interface Target {
  host: string;
  port: number | undefined;
}

/** Several hosts, or one with target_session_attrs other than any: tried in order on every connect. */
interface HostSelection {
  targets: Target[];
  attrs: SessionAttrs;
  /** The config of one host (its URL, or host and port), the rest of the settings shared. */
  configFor(target: Target): pg.ClientConfig;
}

/**
/**
 * A pg config, how SelectingClient picks its host when there is a choice, the node's
 * split-brain guard that admits each connection (server-guard.ts); unconfigured: nothing said
 * where to connect (see UNCONFIGURED).
 */
export type ClientConfig = pg.ClientConfig & { selection?: HostSelection; guard?: ServerGuard; unconfigured?: boolean };

/** The PG* variables pg reads. */
const PG_VARIABLES = ['PGHOST', 'PGPORT', 'PGUSER', 'PGDATABASE', 'PGPASSWORD'];

/**
 * Added to a failed connection's message when nothing said where to connect: pg then tries
 * localhost:5432 as the login user, and fails with "no PostgreSQL user name specified in
 * startup packet" (USER empty) or "role … does not exist", which does not say what to set.
 */
export const UNCONFIGURED = 'nothing configured: set DATABASE_URL=postgres://user:password@host:5432/database, or the PG* variables';

function withConfigHint(error: unknown): Error {
  if (!(error instanceof Error)) return new Error(`${String(error)} (${UNCONFIGURED})`);
  const e = error as Error & { code?: string; address?: string; port?: number; errors?: Array<{ message?: string }> };
  // Node's refusal by every address of "localhost" is an AggregateError with no message.
  const what = e.message || e.errors?.[0]?.message || e.code || e.name;
  return Object.assign(new Error(`${what} (${UNCONFIGURED})`, { cause: error }), { code: e.code, address: e.address, port: e.port, errors: e.errors });
}

function sessionAttrs(value: string, where: string): SessionAttrs {
  if ((SESSION_ATTRS as readonly string[]).includes(value)) return value as SessionAttrs;
  throw new Error(`invalid target_session_attrs "${value}" in ${where}: use one of ${SESSION_ATTRS.join(', ')}`);
}

function port(text: string, where: string): number | undefined {
  if (text === '') return undefined;
  const value = /^[0-9]{1,5}$/.test(text) ? Number(text) : NaN;
  if (!(value >= 1 && value <= 65535)) throw new Error(`invalid port "${text}" in ${where}: 1 to 65535`);
  return value;
}

/** host1:port1,[::1]:port2,host3 -- as libpq reads the host part of a URL. */
function urlHosts(list: string): Target[] {
  const where = `the host list "${list}" of the connection URL`;
  return list.split(',').map((item) => {
    const match = /^(?:\[([0-9A-Fa-f:.%a-zA-Z]+)\]|([^[\]:]+))(?::([^:]*))?$/.exec(item);
    if (!match) throw new Error(`invalid host "${item}" in ${where}: write host, host:port or [ipv6]:port, separated by commas`);
    return { host: match[1] ?? decodeURIComponent(match[2]!), port: port(match[3] ?? '', where) };
  });
}

function urlSelection(connectionString: string): { config: pg.ClientConfig; selection?: HostSelection } {
  const match = /^(postgres(?:ql)?:\/\/)([^/?#]*)([^?#]*)(\?[^#]*)?(#.*)?$/s.exec(connectionString);
  if (!match) return { config: { connectionString } };
  const [, scheme, authority, path, query = ''] = match as unknown as [string, string, string, string, string | undefined];
  const at = authority.lastIndexOf('@');
  const userinfo = at >= 0 ? authority.slice(0, at + 1) : '';
  const hostList = authority.slice(at + 1);
  const params = new URLSearchParams(query.slice(1));
  const attrsText = params.get('target_session_attrs');
  const attrs = attrsText === null ? 'any' : sessionAttrs(attrsText, 'the connection URL');
  // One host and no choice to make: the URL goes to pg untouched, as fast as it always was.
  if (!hostList.includes(',') && attrs === 'any') return { config: { connectionString } };
  const targets = urlHosts(hostList);
  params.delete('target_session_attrs');
  const rest = params.toString();
  const urlFor = (target: Target): string => {
    const host = target.host.includes(':') ? `[${target.host}]` : encodeURIComponent(target.host);
    return `${scheme}${userinfo}${host}${target.port === undefined ? '' : `:${target.port}`}${path}${rest ? `?${rest}` : ''}`;
  };
  return {
    config: { connectionString: urlFor(targets[0]!) },
    selection: { targets, attrs, configFor: (target) => ({ connectionString: urlFor(target) }) },
  };
}

/** PGHOST=a,b PGPORT=p1,p2 PGTARGETSESSIONATTRS=… -- as libpq reads them. */
function envSelection(env: NodeJS.ProcessEnv): { config: pg.ClientConfig; selection?: HostSelection } {
  const hostText = env.PGHOST || 'localhost';
  const portText = env.PGPORT ?? '';
  const attrs = env.PGTARGETSESSIONATTRS ? sessionAttrs(env.PGTARGETSESSIONATTRS, 'PGTARGETSESSIONATTRS') : 'any';
  if (!hostText.includes(',') && !portText.includes(',') && attrs === 'any') return { config: {} };
  const hosts = hostText.split(',').map((host) => host.trim());
  if (hosts.some((host) => host === '')) throw new Error(`invalid PGHOST "${hostText}": an empty host in the list`);
  const ports = portText.split(',').map((text) => port(text.trim(), `PGPORT "${portText}"`));
  if (ports.length !== 1 && ports.length !== hosts.length) {
    throw new Error(`PGPORT has ${ports.length} ports for the ${hosts.length} hosts of PGHOST: give one port, or one for each host`);
  }
  const targets = hosts.map((host, i) => ({ host, port: ports.length === 1 ? ports[0] : ports[i] }));
  const configFor = (target: Target): pg.ClientConfig => ({ host: target.host, ...(target.port === undefined ? { port: 5432 } : { port: target.port }) });
  return { config: configFor(targets[0]!), selection: { targets, attrs, configFor } };
}

function settings(options: ConnectionOptions): ClientConfig {
  const connectionString = options.connectionString ?? process.env.DATABASE_URL;
  const { config, selection } = connectionString ? urlSelection(connectionString) : envSelection(process.env);
  const unconfigured = !connectionString && PG_VARIABLES.every((name) => !process.env[name]);
  const shared = { application_name: 'pg-tasks', connectionTimeoutMillis: 10_000, ...(unconfigured ? { unconfigured } : {}) };
  if (!selection) return { ...config, ...shared };
  const configFor = (target: Target): pg.ClientConfig => ({ ...shared, ...selection.configFor(target) });
  return { ...config, ...shared, selection: { ...selection, configFor } };
}

export function poolConfig(options: ConnectionOptions, extra: pg.PoolConfig = {}, guard?: ServerGuard): pg.PoolConfig & ClientConfig {
  const config = settings(options);
  if (guard) config.guard = guard;
  if (!config.selection) return { ...config, ...extra, ...(guard || config.unconfigured ? { Client: SelectingClient as unknown as pg.PoolConfig['Client'] } : {}) };
  const selection = { ...config.selection, configFor: (target: Target) => ({ ...config.selection!.configFor(target), ...extra }) };
  return { ...config, ...extra, selection, Client: SelectingClient as unknown as pg.PoolConfig['Client'] };
}

/** The URL of the connections that need a session: see ConnectionOptions.sessionUrl. */
export function resolveSessionUrl(options: ConnectionOptions): string | undefined {
  return options.sessionUrl || process.env.PGTASKS_SESSION_URL || options.connectionString || process.env.DATABASE_URL || undefined;
}

/** A dedicated connection (LISTEN, a lock, a migration): it goes to the session URL. */
export function clientConfig(options: ConnectionOptions, guard?: ServerGuard): ClientConfig {
  const config = settings({ ...options, connectionString: resolveSessionUrl(options) });
  return guard ? { ...config, guard } : config;
}

/** A client for a config of clientConfig(): one that picks its host when there is a choice, or is admitted by a guard. */
export function createClient(config: ClientConfig): pg.Client {
  return config.selection || config.guard || config.unconfigured ? new SelectingClient(config) : new pg.Client(config);
}

interface Probe {
  target: Target;
  recovery: boolean;
  readOnly: boolean;
  /** Why the guard refuses this server (a stale old primary, another cluster), or null. */
  refused: string | null;
}

function fits(attrs: SessionAttrs, probe: Probe): boolean {
  switch (attrs) {
    case 'any':
    case 'prefer-standby':
      return true;
    case 'read-write':
      return !probe.readOnly;
    case 'read-only':
      return probe.readOnly;
    case 'primary':
      return !probe.recovery;
    case 'standby':
      return probe.recovery;
  }
}

function label(target: Target): string {
  const host = target.host.includes(':') ? `[${target.host}]` : target.host;
  return target.port === undefined ? host : `${host}:${target.port}`;
}

/** Connects to one host and reads what libpq reads of it; the connection is closed again. */
async function probe(selection: HostSelection, target: Target, guard: ServerGuard | undefined): Promise<Probe> {
  const client = new pg.Client(selection.configFor(target));
  client.on('error', () => undefined);
  try {
    await client.connect();
    const { rows } = await client.query<{ recovery: boolean; read_only: string }>(
      "SELECT pg_is_in_recovery() AS recovery, current_setting('transaction_read_only') AS read_only",
    );
    const identity = guard ? await guard.identify(client) : null;
    return { target, recovery: rows[0]!.recovery, readOnly: rows[0]!.read_only === 'on', refused: identity ? guard!.refusal(identity) : null };
  } finally {
    await client.end().catch(() => undefined);
  }
}

/**
 * The host a new connection goes to: each in order is connected to and checked as libpq does
 * (pg_is_in_recovery(), transaction_read_only), and the first that fits is kept;
 * prefer-standby takes the first standby, else the first that answered. With a guard, a
 * server it refuses (a stale old primary) is skipped as one that does not fit; when every
 * host that answered was refused so, the guard's error is thrown (the node stands by).
 */
export async function selectHost(selection: HostSelection, guard?: ServerGuard): Promise<Target> {
  const reasons: string[] = [];
  const refused: string[] = [];
  let fallback: Target | undefined;
  for (const target of selection.targets) {
    let found: Probe;
    try {
      found = await probe(selection, target, guard);
    } catch (error) {
      reasons.push(`${label(target)}: ${(error as Error).message}`);
      continue;
    }
    if (found.refused) {
      reasons.push(`${label(target)}: ${found.refused}`);
      refused.push(`${label(target)}: ${found.refused}`);
      continue;
    }
    if (selection.attrs === 'prefer-standby') {
      if (found.recovery) return target;
      fallback ??= target;
      continue;
    }
    if (fits(selection.attrs, found)) return target;
    reasons.push(`${label(target)}: ${found.recovery ? 'a standby' : 'a primary'}${found.readOnly ? ', read-only' : ', read-write'}`);
  }
  if (fallback) return fallback;
  if (guard && refused.length > 0) throw guard.refuse(refused.join('; '));
  throw new Error(`no host fits target_session_attrs=${selection.attrs} (${reasons.join('; ')})`.replace(/\s*\n\s*/g, ' '));
}

/**
 * A pg.Client for a host list: connect() first finds the host (selectHost: one probe
 * connection per host tried) and then connects there. The pool makes its clients of this
 * class, and the listener and the lock session make one on every reconnect, so each new
 * connection follows a promotion. With a guard (the node's), the connection is admitted by it
 * before its first use, or closed and refused (ServerGuard.admit). Unconfigured, its failure
 * says what to set.
 */
export class SelectingClient extends pg.Client {
  private readonly selection: HostSelection | undefined;
  private readonly guard: ServerGuard | undefined;
  private readonly unconfigured: boolean;

  constructor(config: ClientConfig) {
    const { selection, guard, unconfigured, ...rest } = config;
    super(rest);
    this.selection = selection;
    this.guard = guard;
    this.unconfigured = unconfigured ?? false;
  }

  override connect(): Promise<pg.Client>;
  override connect(callback: (err: Error | null, client?: pg.Client) => void): void;
  override connect(callback?: (err: Error | null, client?: pg.Client) => void): Promise<pg.Client> | void {
    if (!this.selection && !this.guard && !this.unconfigured) return callback ? super.connect(callback) : super.connect();
    const connected = this.connectSelected().catch((error: unknown) => {
      throw this.unconfigured ? withConfigHint(error) : error;
    }).then(async (client) => {
      if (!this.guard) return client;
      // Connected, but not yet the caller's: an error event now (the connection reset during
      // the identity statement) has no listener of theirs, and would crash the process. The
      // statement fails with it anyway.
      const ignore = (): void => undefined;
      this.on('error', ignore);
      try {
        await this.guard.admit(this, label({ host: this.host, port: this.port }));
      } catch (error) {
        // Refused or broken: closed, and it stays deaf to errors (nobody uses it any more).
        await this.end().catch(() => undefined);
        throw error;
      }
      this.off('error', ignore);
      return client;
    });
    if (!callback) return connected;
    connected.then((client) => callback(null, client), (error: Error) => callback(error));
  }

  private connectSelected(): Promise<pg.Client> {
    if (!this.selection) return super.connect();
    const selection = this.selection;
    return selectHost(selection, this.guard).then((target) => {
      // The pool's connectionTimeoutMillis ends a connect by destroying the socket: honoured
      // here too, where it fell during the probes.
      if ((this as unknown as { connection: { stream: { destroyed: boolean } } }).connection.stream.destroyed) {
        throw new Error('timeout expired');
      }
      const params = (this as unknown as { connectionParameters: { host: string; port: number } }).connectionParameters;
      const chosen = new pg.Client(selection.configFor(target));
      this.host = params.host = chosen.host;
      this.port = params.port = chosen.port;
      return super.connect();
    });
  }
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

/** host:port/database of a connection string, without its user or password, for a message. */
export function describeUrl(url: string | undefined): string {
  if (!url) return 'the PG* variables';
  try {
    const u = new URL(url);
    return `${u.host}${u.pathname}`;
  } catch {
    return 'the URL given';
  }
}

/**
 * Whether connections of `config` are sessions of their own, or go through a transaction (or
 * statement) pooler that hands each statement to whichever server connection is free. Two
 * clients: a runs a statement, b holds a transaction open, a runs another. A session keeps its
 * backend and never shares it; behind a transaction pooler b gets the server connection a just
 * let go (PgBouncer reuses the last one first), or a's second statement lands on another.
 * Returns null for a session, else what was seen. A pooler that happens to give a its same
 * connection back while b holds another goes unseen: the check never refuses a real session.
 */
export async function detectTransactionPooling(config: ClientConfig, backendPid: (db: pg.ClientBase) => Promise<number>): Promise<string | null> {
  // Through host selection, like every connection of the node: a dead first host is skipped.
  const a = createClient(config);
  const b = createClient(config);
  a.on('error', () => undefined);
  b.on('error', () => undefined);
  try {
    await a.connect();
    await b.connect();
    const first = await backendPid(a);
    await b.query('BEGIN');
    const other = await backendPid(b);
    const second = await backendPid(a);
    await b.query('ROLLBACK');
    if (other === first) return `two connections shared backend ${first}`;
    if (second !== first) return `its backend changed between two statements (${first}, then ${second})`;
    return null;
  } finally {
    await Promise.all([a.end().catch(() => undefined), b.end().catch(() => undefined)]);
  }
}
