// What the routes share: the store, the access rules, the live feed, and the per-request
// session and flash message.
import type { FastifyReply, FastifyRequest } from 'fastify';
import type { Logger } from 'pino';
import type { Access, Session } from './access.js';
import { parseCookies } from './access.js';
import type { LiveFeed } from './live.js';
import type { DashboardStore } from './store.js';
import type { PageContext } from './views/layout.js';

export interface Dashboard {
  store: DashboardStore;
  access: Access;
  live: LiveFeed;
  /** user@host:port/database, for the header. */
  database: string;
  schema: string;
  log: Logger;
  /** The overview's clock: null is the database's now() (a test gives a fixed time). */
  now: () => Date | null;
}

const sessions = new WeakMap<FastifyRequest, Session>();

export function setSession(request: FastifyRequest, session: Session): void {
  sessions.set(request, session);
}

export function sessionOf(request: FastifyRequest): Session {
  const session = sessions.get(request);
  if (!session) throw new Error('no session: the access hook did not run');
  return session;
}

const FLASH_COOKIE = 'pgtasks_flash';

/** A message for the next page this browser loads (after the redirect that ends a POST). */
export function flash(reply: FastifyReply, kind: 'notice' | 'error', message: string): void {
  const value = Buffer.from(JSON.stringify({ kind, message: message.slice(0, 1000) })).toString('base64url');
  void reply.header('set-cookie', `${FLASH_COOKIE}=${value}; Path=/; HttpOnly; SameSite=Strict; Max-Age=60`);
}

/** The page's context; a full page takes the flash message (and clears it), a fragment leaves it. */
export function pageContext(dashboard: Dashboard, request: FastifyRequest, reply: FastifyReply, takeFlash: boolean): PageContext {
  const session = sessionOf(request);
  const ctx: PageContext = {
    database: dashboard.database,
    schema: dashboard.schema,
    csrf: dashboard.access.csrfToken(session),
    role: session.role,
    readOnly: dashboard.access.readOnly,
    notice: null,
    error: null,
  };
  const value = takeFlash ? parseCookies(request.headers.cookie).get(FLASH_COOKIE) : undefined;
  if (value) {
    try {
      const { kind, message } = JSON.parse(Buffer.from(value, 'base64url').toString('utf8')) as { kind: string; message: string };
      if (kind === 'notice') ctx.notice = String(message);
      else ctx.error = String(message);
    } catch {
      // A cookie we did not write: ignored.
    }
    void reply.header('set-cookie', `${FLASH_COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0`);
  }
  return ctx;
}
