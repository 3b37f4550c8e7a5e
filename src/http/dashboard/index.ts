// The dashboard: an HTTP server (Fastify) over the same rows as everything else, with one
// LISTEN connection that keeps the browsers' pages current (server-sent events).
//   startDashboard({ connectionString, schema, host, port, token, logger }) → { url, close() }
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import Fastify, { type FastifyError, type FastifyReply, type FastifyRequest } from 'fastify';
import pg from 'pg';
import type { Logger } from 'pino';
import { clientConfig, poolConfig, resolveSchema } from '../../db/connection.js';
import { describeError } from '../../db/errors.js';
import { loadStatements } from '../../sql/queries/index.js';
import { Access, isLoopback, type RequestFacts } from './access.js';
import { setSession, sessionOf, type Dashboard } from './context.js';
import { DEFAULT_STREAM_LIMITS } from './limits.js';
import { LiveFeed } from './live.js';
import { registerActions } from './routes/actions.js';
import { registerOutput } from './routes/output.js';
import { registerPages, securityHeaders } from './routes/pages.js';
import { DashboardStore } from './store.js';

export interface DashboardOptions {
  connectionString?: string | undefined;
  schema?: string | undefined;
  /** Default 127.0.0.1. Any other than a loopback address needs a token. */
  host?: string | undefined;
  /** Default 8080; 0: a free port. */
  port?: number | undefined;
  /** Required off loopback; PGTASKS_DASHBOARD_TOKEN when not given. */
  token?: string | null | undefined;
  /** Read-only access beside the token (needs one); PGTASKS_DASHBOARD_READER_TOKEN when not given. */
  readerToken?: string | null | undefined;
  /** Serve every page with no action: no forms, every POST refused with 403. */
  readOnly?: boolean | undefined;
  /** Live streams (GET /events, one per open page) at once from one client address; default 16. */
  maxStreamsPerAddress?: number | undefined;
  /** Live streams at once in all; default 256. Past either cap: 503 and one line. */
  maxStreams?: number | undefined;
  /** The overview's "now": default the database's clock; tests give a fixed time. */
  now?: (() => Date) | undefined;
  logger: Logger;
}

export interface DashboardServer {
  /** http://host:port/ (with ?token= when a token is set: the link to open). */
  url: string;
  port: number;
  close(): Promise<void>;
}

export class DashboardConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'DashboardConfigError';
  }
}

// src/http/dashboard and dist/http/dashboard both sit three levels below the package root;
// the browser's files ship in src.
const PUBLIC_DIR = fileURLToPath(new URL('../../../src/http/dashboard/public/', import.meta.url));
const STATIC: Record<string, { type: string; body: string }> = {
  'live.js': { type: 'text/javascript; charset=utf-8', body: readFileSync(`${PUBLIC_DIR}live.js`, 'utf8') },
  'style.css': { type: 'text/css; charset=utf-8', body: readFileSync(`${PUBLIC_DIR}style.css`, 'utf8') },
  'favicon.svg': { type: 'image/svg+xml', body: readFileSync(`${PUBLIC_DIR}favicon.svg`, 'utf8') },
};

/** A token of at least this many characters: a short one could be guessed over the network. */
const MIN_TOKEN_LENGTH = 16;

export async function startDashboard(options: DashboardOptions): Promise<DashboardServer> {
  const host = options.host ?? '127.0.0.1';
  const token = options.token ?? process.env.PGTASKS_DASHBOARD_TOKEN ?? null;
  if (!isLoopback(host) && !token) {
    throw new DashboardConfigError(`the dashboard on ${host} (not a loopback address) needs a token: give --token or PGTASKS_DASHBOARD_TOKEN`);
  }
  if (token !== null && token.length < MIN_TOKEN_LENGTH) {
    throw new DashboardConfigError(`the dashboard token must have at least ${MIN_TOKEN_LENGTH} characters (openssl rand -hex 16 makes one)`);
  }
  const readerToken = options.readerToken ?? process.env.PGTASKS_DASHBOARD_READER_TOKEN ?? null;
  if (readerToken !== null) {
    // Without an operator token, a loopback dashboard lets anyone in as operator: a reader
    // token there would guard nothing.
    if (!token) throw new DashboardConfigError('the reader token needs the operator token beside it: give --token too (or --read-only --token T for a dashboard that only reads)');
    if (readerToken.length < MIN_TOKEN_LENGTH) {
      throw new DashboardConfigError(`the reader token must have at least ${MIN_TOKEN_LENGTH} characters (openssl rand -hex 16 makes one)`);
    }
    if (readerToken === token) throw new DashboardConfigError('the reader token must differ from the operator token');
  }
  const limits = {
    perAddress: streamCap(options.maxStreamsPerAddress, DEFAULT_STREAM_LIMITS.perAddress, 'the most live streams per address'),
    total: streamCap(options.maxStreams, DEFAULT_STREAM_LIMITS.total, 'the most live streams'),
  };
  const schema = resolveSchema(options.schema);
  const connection = { connectionString: options.connectionString, schema };
  const pool = new pg.Pool(poolConfig(connection, { max: 4, application_name: 'pg-tasks-dashboard' }));
  // An idle connection that drops is not an error of any request; the next one reconnects.
  pool.on('error', () => undefined);
  const store = new DashboardStore(pool, loadStatements(schema));
  const live = new LiveFeed(clientConfig(connection), schema, store, options.logger, limits);
  const dashboard: Dashboard = {
    store,
    access: new Access({ token, readerToken, readOnly: options.readOnly ?? false, loopbackOnly: isLoopback(host) }),
    live,
    database: databaseLabel(clientConfig(connection)),
    schema,
    log: options.logger,
    now: options.now ?? (() => null),
  };

  // forceCloseConnections: close() ends the browsers' keep-alive connections too, rather than
  // waiting for them to time out.
  const app = Fastify({
    logger: false, bodyLimit: 256 * 1024, forceCloseConnections: true,
    // A path Fastify cannot decode (/tasks/%FF) or read: one line, as our own errors.
    frameworkErrors: (error, _request, reply) => {
      void (reply as FastifyReply).code(error.statusCode ?? 400).type('text/plain; charset=utf-8').send(`${error.message}\n`);
    },
  });
  app.addContentTypeParser('application/x-www-form-urlencoded', { parseAs: 'string' }, (_request, body, done) => {
    done(null, Object.fromEntries(new URLSearchParams(body as string)));
  });

  app.addHook('onRequest', async (request, reply) => {
    const facts = requestFacts(request);
    const verdict = dashboard.access.check(facts);
    if (verdict.kind === 'refused' && verdict.retryAfter !== undefined) void reply.header('retry-after', String(verdict.retryAfter));
    if (verdict.kind === 'refused') return reply.code(verdict.status).type('text/plain; charset=utf-8').send(`${verdict.message}\n`);
    if (verdict.kind === 'redirect') return reply.header('set-cookie', verdict.setCookie).redirect(verdict.location, 303);
    setSession(request, verdict.session);
    if (verdict.session.setCookie) void reply.header('set-cookie', verdict.session.setCookie);
    // A reader changes nothing: refused before its body is read, whatever the path.
    if (request.method !== 'GET' && request.method !== 'HEAD') {
      const refusal = dashboard.access.refuseReader(verdict.session);
      if (refusal) return reply.code(403).type('text/plain; charset=utf-8').send(`${refusal}\n`);
    }
    return undefined;
  });
  // After the body is parsed: the CSRF token travels in the form.
  app.addHook('preValidation', async (request, reply) => {
    if (request.method === 'GET' || request.method === 'HEAD') return undefined;
    const body = request.body as { csrf?: unknown } | undefined;
    const csrf = typeof body?.csrf === 'string' ? body.csrf : (request.headers['x-csrf-token'] as string | undefined);
    const refusal = dashboard.access.refuseCrossSite(requestFacts(request), sessionOf(request), csrf);
    if (refusal) return reply.code(403).type('text/plain; charset=utf-8').send(`${refusal}\n`);
    return undefined;
  });
  app.addHook('onSend', async (_request, reply, payload) => {
    void reply.headers(securityHeaders());
    return payload;
  });

  app.get<{ Params: { file: string } }>('/static/:file', (request, reply) => {
    const file = STATIC[request.params.file];
    if (!file) return reply.code(404).type('text/plain; charset=utf-8').send('not found\n');
    return reply.type(file.type).header('cache-control', 'no-cache').send(file.body);
  });
  registerPages(app, dashboard);
  registerActions(app, dashboard);
  registerOutput(app, dashboard);

  app.setNotFoundHandler((request, reply) => reply.code(404).type('text/plain; charset=utf-8').send(`no page at ${request.method} ${request.url.split('?')[0]}\n`));
  app.setErrorHandler((error: FastifyError, request, reply) => {
    // SQLSTATE class 22 (data exception: a number out of range, a NUL byte) is a value of the
    // request that the database refused.
    const dataError = typeof error.code === 'string' && /^22[0-9A-Z]{3}$/.test(error.code);
    // A database user without the privilege (its role, docs/security.md "Roles"): 403.
    const denied = (error as { code?: string }).code === '42501';
    const status = error.validation || dataError ? 400 : denied ? 403 : error.statusCode && error.statusCode < 500 ? error.statusCode : 500;
    // One line, never a stack: the request's fault in its words, else the database's or ours.
    const message = error.validation ? validationMessage(error) : status < 500 && !denied ? error.message : describeError(error, schema);
    if (status >= 500) options.logger.error({ err: error.message, url: request.url }, 'dashboard request failed');
    return reply.code(status).type('text/plain; charset=utf-8').send(`${message.split('\n')[0]}\n`);
  });

  try {
    await live.start();
    await app.listen({ host, port: options.port ?? 8080 });
  } catch (error) {
    await live.stop();
    await app.close();
    await pool.end();
    throw error;
  }
  const address = app.server.address();
  const port = typeof address === 'object' && address ? address.port : (options.port ?? 8080);
  const shown = host.includes(':') ? `[${host}]` : host === '0.0.0.0' ? '127.0.0.1' : host;
  return {
    url: `http://${shown}:${port}/${token ? `?token=${encodeURIComponent(token)}` : ''}`,
    port,
    async close() {
      // The event streams first: the server waits for open connections to end.
      await live.stop();
      await app.close();
      await pool.end();
    },
  };
}

function streamCap(value: number | undefined, fallback: number, what: string): number {
  if (value === undefined) return fallback;
  if (!Number.isSafeInteger(value) || value < 1) throw new DashboardConfigError(`${what} must be a whole number of at least 1, got ${value}`);
  return value;
}

/** "querystring/state must be one of DR, AW, …" rather than "equal to one of the allowed values". */
function validationMessage(error: FastifyError): string {
  const first = error.validation?.[0];
  const allowed = (first?.params as { allowedValues?: unknown[] } | undefined)?.allowedValues;
  if (first?.keyword === 'enum' && allowed) {
    return `${error.validationContext ?? 'request'}${first.instancePath} must be one of ${allowed.filter((v) => v !== '').join(', ')}`;
  }
  return error.message;
}

function requestFacts(request: FastifyRequest): RequestFacts {
  const header = (name: string): string | undefined => {
    const value = request.headers[name];
    return Array.isArray(value) ? value[0] : value;
  };
  return {
    method: request.method,
    url: request.url,
    host: header('host'),
    cookie: header('cookie'),
    authorization: header('authorization'),
    origin: header('origin'),
    secFetchSite: header('sec-fetch-site'),
    address: request.ip,
  };
}

/** user@host:port/database, without the password, whatever the connection string held. */
function databaseLabel(config: pg.ClientConfig): string {
  if (config.connectionString) {
    try {
      const url = new URL(config.connectionString);
      return `${decodeURIComponent(url.username) || process.env.PGUSER || 'postgres'}@${url.hostname || 'localhost'}:${url.port || '5432'}${url.pathname || '/'}`;
    } catch {
      return 'database';
    }
  }
  const env = process.env;
  return `${env.PGUSER ?? 'postgres'}@${env.PGHOST ?? 'localhost'}:${env.PGPORT ?? '5432'}/${env.PGDATABASE ?? env.PGUSER ?? 'postgres'}`;
}
