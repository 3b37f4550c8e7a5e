// Who may use the dashboard, and which requests may change rows.
//
// - Bound to a loopback address without a token, anyone on this host may use it (like psql to
//   a local trust server); the Host header must name a loopback host, so a web page whose DNS
//   name rebinds to 127.0.0.1 can't read it.
// - With a token (required off loopback), a request carries it once as ?token=, which turns
//   into an HttpOnly, SameSite=Strict session cookie (and a redirect that drops it from the
//   URL), or on every request as Authorization: Bearer (scripts). The redirect goes to a
//   path of this site only (localPath): /x/..//evil.example/?token= would otherwise send the
//   browser to //evil.example/, another host.
// - Wrong tokens are counted per client address (limits.ts: 10 at once, then one each 6 s);
//   past that budget every token the address presents is refused with 429 and Retry-After,
//   unread, so that the answer says nothing about the token. A session cookie still works.
// - A request that changes rows (POST) must come from our own pages: Origin, when sent, names
//   this host; Sec-Fetch-Site, when sent, is same-origin; and the form carries the session's
//   CSRF token. Sessions are stateless (an HMAC of a random id with a key of this process), so
//   the server keeps nothing per visitor; restarting it asks for the token again.
// - Two roles: an operator may change rows, a reader only reads (no forms are rendered, and
//   every POST is refused with 403 before its body is read). --read-only makes everyone a
//   reader; otherwise the reader token (--reader-token) gives a reader and the token an
//   operator (and so does a loopback dashboard without a token). The session cookie carries its
//   role under the same HMAC, so a reader can't turn its cookie into an operator's.
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { isIP } from 'node:net';
import { clientKey, FailureBudget } from './limits.js';

export const SESSION_COOKIE = 'pgtasks_session';

export function isLoopback(host: string): boolean {
  const bare = host.replace(/^\[|\]$/g, '');
  if (bare === 'localhost') return true;
  if (isIP(bare) === 4) return bare.startsWith('127.');
  return bare === '::1';
}

/** What a session may do: an operator changes rows, a reader only reads. */
export type Role = 'operator' | 'reader';

export interface Session {
  /** The session id, from the cookie, or new for this response. */
  id: string;
  role: Role;
  /** A Set-Cookie value to send: the session is new. */
  setCookie: string | null;
  /** Authenticated by Authorization: Bearer rather than a cookie (no CSRF token expected). */
  bearer: boolean;
}

export type Verdict =
  | { kind: 'ok'; session: Session }
  | { kind: 'redirect'; location: string; setCookie: string }
  | { kind: 'refused'; status: number; message: string; retryAfter?: number };

export interface RequestFacts {
  method: string;
  url: string;
  host: string | undefined;
  cookie: string | undefined;
  authorization: string | undefined;
  origin: string | undefined;
  secFetchSite: string | undefined;
  /** The TCP peer's address (not X-Forwarded-For): what wrong tokens are counted against. */
  address: string;
}

export interface AccessOptions {
  /** The operator's token (null: none; then only a loopback dashboard is served). */
  token: string | null;
  /** The reader's token: read-only access beside the operator's token. */
  readerToken?: string | null;
  /** Everyone is a reader, whichever token they bring. */
  readOnly?: boolean;
  loopbackOnly: boolean;
}

export class Access {
  private readonly key = randomBytes(32);
  /** Wrong tokens per client address: 10 at once, then one each 6 s (limits.ts). */
  private readonly failures = new FailureBudget();
  private readonly token: string | null;
  private readonly readerToken: string | null;
  readonly readOnly: boolean;
  private readonly loopbackOnly: boolean;

  constructor(options: AccessOptions) {
    this.token = options.token;
    this.readerToken = options.readerToken ?? null;
    this.readOnly = options.readOnly ?? false;
    this.loopbackOnly = options.loopbackOnly;
  }

  /** The role a token gives (null: neither token). Both compared, in constant time each. */
  private roleOf(given: string): Role | null {
    const operator = this.token !== null && same(given, this.token);
    const reader = this.readerToken !== null && same(given, this.readerToken);
    if (operator) return this.readOnly ? 'reader' : 'operator';
    return reader ? 'reader' : null;
  }

  /** The role of a session without a token (a loopback dashboard): operator unless read-only. */
  private get openRole(): Role {
    return this.readOnly ? 'reader' : 'operator';
  }

  /** Whether the request may go on, as whom. */
  check(request: RequestFacts): Verdict {
    if (this.loopbackOnly && !this.token && !isLoopback(hostName(request.host))) {
      return { kind: 'refused', status: 421, message: `this dashboard answers to a loopback host name only, not "${request.host ?? ''}"` };
    }
    const fromCookie = this.sessionFromCookie(request.cookie);
    if (this.token) {
      const bearer = request.authorization?.startsWith('Bearer ') ? request.authorization.slice(7) : null;
      const url = new URL(request.url, 'http://dashboard');
      const given = bearer ?? url.searchParams.get('token');
      if (given !== null) {
        const key = clientKey(request.address);
        const wait = this.failures.waitFor(key);
        if (wait > 0) {
          return { kind: 'refused', status: 429, retryAfter: wait, message: `too many wrong tokens from ${request.address}: try again in ${wait} s` };
        }
        const role = this.roleOf(given);
        if (role === null) {
          this.failures.fail(key);
          return { kind: 'refused', status: 401, message: 'wrong token' };
        }
        // A Bearer request is its token's role, whatever cookie comes with it; the cookie's id
        // still binds the CSRF token of a form sent with both.
        if (bearer !== null) return { kind: 'ok', session: { id: fromCookie?.id ?? 'bearer', role, setCookie: null, bearer: fromCookie === null } };
        url.searchParams.delete('token');
        return { kind: 'redirect', location: localPath(url.pathname + url.search, '/'), setCookie: this.newCookie(request, role).setCookie! };
      }
      if (fromCookie === null) {
        return { kind: 'refused', status: 401, message: 'this dashboard needs its token: open it with ?token=TOKEN once, or send Authorization: Bearer TOKEN' };
      }
      return { kind: 'ok', session: { ...fromCookie, role: this.readOnly ? 'reader' : fromCookie.role, setCookie: null, bearer: false } };
    }
    // No token: the cookie's role is ours to give (the server may have restarted read-only).
    return { kind: 'ok', session: fromCookie === null ? this.newCookie(request, this.openRole) : { id: fromCookie.id, role: this.openRole, setCookie: null, bearer: false } };
  }

  /** For a request that changes rows: null when its session may, else why not (403). */
  refuseReader(session: Session): string | null {
    if (session.role === 'operator') return null;
    return this.readOnly
      ? 'this dashboard is read-only (--read-only): it changes nothing'
      : 'read-only access: the reader token changes nothing (use the operator token)';
  }

  /** For a request that changes rows: null when it may, else why not. */
  refuseCrossSite(request: RequestFacts, session: Session, csrf: string | undefined): string | null {
    if (request.secFetchSite !== undefined && request.secFetchSite !== 'same-origin' && request.secFetchSite !== 'none') {
      return `cross-site request refused (Sec-Fetch-Site: ${request.secFetchSite})`;
    }
    if (request.origin !== undefined) {
      let originHost: string | null = null;
      try {
        originHost = new URL(request.origin).host;
      } catch {
        originHost = null;
      }
      if (originHost !== request.host) return `cross-site request refused (Origin ${request.origin})`;
    }
    if (session.bearer) return null;
    if (csrf === undefined || !same(csrf, this.csrfToken(session))) {
      return 'cross-site request refused: the form has no valid CSRF token (reload the page and try again)';
    }
    return null;
  }

  /** The token our forms carry: bound to the session, so another site can't know it. */
  csrfToken(session: Session): string {
    return this.mac(`csrf:${session.id}`);
  }

  private newCookie(request: RequestFacts, role: Role): Session {
    const id = randomBytes(16).toString('base64url');
    // Secure only where the browser came over https (a proxy in front); on plain http a
    // Secure cookie would never come back.
    const secure = request.origin?.startsWith('https:') ? '; Secure' : '';
    const value = `${id}.${role}.${this.mac(`session:${id}:${role}`)}`;
    return { id, role, bearer: false, setCookie: `${SESSION_COOKIE}=${value}; Path=/; HttpOnly; SameSite=Strict${secure}` };
  }

  /** The cookie's id and role, when its HMAC (over both) is ours. */
  private sessionFromCookie(header: string | undefined): { id: string; role: Role } | null {
    const value = parseCookies(header).get(SESSION_COOKIE);
    if (!value) return null;
    const [id, role, mac, extra] = value.split('.');
    if (!id || (role !== 'operator' && role !== 'reader') || !mac || extra !== undefined) return null;
    if (!same(mac, this.mac(`session:${id}:${role}`))) return null;
    return { id, role };
  }

  private mac(text: string): string {
    return createHmac('sha256', this.key).update(text).digest('base64url');
  }
}

function same(a: string, b: string): boolean {
  const x = Buffer.from(a);
  const y = Buffer.from(b);
  return x.length === y.length && timingSafeEqual(x, y);
}

function hostName(host: string | undefined): string {
  if (!host) return '';
  if (host.startsWith('[')) return host.slice(0, host.indexOf(']') + 1);
  return host.replace(/:\d+$/, '');
}

export function parseCookies(header: string | undefined): Map<string, string> {
  const cookies = new Map<string, string>();
  for (const part of (header ?? '').split(';')) {
    const at = part.indexOf('=');
    if (at > 0) cookies.set(part.slice(0, at).trim(), part.slice(at + 1).trim());
  }
  return cookies;
}

/**
 * Where a redirect may go: a path of this site only (never another host). Printable ASCII only:
 * a browser drops tabs and newlines from a Location ("/\t/evil.example" is "//evil.example"),
 * and Node refuses a header with control or non-Latin-1 characters (a 500). "//host" and
 * "/\\host" name another host, so they get the fallback.
 */
export function localPath(back: string | undefined, fallback: string): string {
  return back && /^\/[!-~]*$/.test(back) && !back.startsWith('//') && !back.startsWith('/\\') ? back : fallback;
}
