// Who may use the dashboard, and which requests may change rows.
//
// - Bound to a loopback address without a token, anyone on this host may use it (like psql to
//   a local trust server); the Host header must name a loopback host, so a web page whose DNS
//   name rebinds to 127.0.0.1 can't read it.
// - With a token (required off loopback), a request carries it once as ?token=, which turns
//   into an HttpOnly, SameSite=Strict session cookie (and a redirect that drops it from the
//   URL), or on every request as Authorization: Bearer (scripts).
// - A request that changes rows (POST) must come from our own pages: Origin, when sent, names
//   this host; Sec-Fetch-Site, when sent, is same-origin; and the form carries the session's
//   CSRF token. Sessions are stateless (an HMAC of a random id with a key of this process), so
//   the server keeps nothing per visitor; restarting it asks for the token again.
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { isIP } from 'node:net';

export const SESSION_COOKIE = 'pgtasks_session';

export function isLoopback(host: string): boolean {
  const bare = host.replace(/^\[|\]$/g, '');
  if (bare === 'localhost') return true;
  if (isIP(bare) === 4) return bare.startsWith('127.');
  return bare === '::1';
}

export interface Session {
  /** The session id, from the cookie, or new for this response. */
  id: string;
  /** A Set-Cookie value to send: the session is new. */
  setCookie: string | null;
  /** Authenticated by Authorization: Bearer rather than a cookie (no CSRF token expected). */
  bearer: boolean;
}

export type Verdict =
  | { kind: 'ok'; session: Session }
  | { kind: 'redirect'; location: string; setCookie: string }
  | { kind: 'refused'; status: number; message: string };

export interface RequestFacts {
  method: string;
  url: string;
  host: string | undefined;
  cookie: string | undefined;
  authorization: string | undefined;
  origin: string | undefined;
  secFetchSite: string | undefined;
}

export class Access {
  private readonly key = randomBytes(32);

  constructor(
    private readonly token: string | null,
    private readonly loopbackOnly: boolean,
  ) {}

  /** Whether the request may go on, as whom. */
  check(request: RequestFacts): Verdict {
    if (this.loopbackOnly && !this.token && !isLoopback(hostName(request.host))) {
      return { kind: 'refused', status: 421, message: `this dashboard answers to a loopback host name only, not "${request.host ?? ''}"` };
    }
    const fromCookie = this.sessionFromCookie(request.cookie);
    if (this.token) {
      if (request.authorization?.startsWith('Bearer ') && same(request.authorization.slice(7), this.token)) {
        return { kind: 'ok', session: { id: fromCookie ?? 'bearer', setCookie: null, bearer: fromCookie === null } };
      }
      const url = new URL(request.url, 'http://dashboard');
      const given = url.searchParams.get('token');
      if (given !== null) {
        if (!same(given, this.token)) return { kind: 'refused', status: 401, message: 'wrong token' };
        url.searchParams.delete('token');
        return { kind: 'redirect', location: url.pathname + url.search, setCookie: this.newCookie(request).setCookie! };
      }
      if (fromCookie === null) {
        return { kind: 'refused', status: 401, message: 'this dashboard needs its token: open it with ?token=TOKEN once, or send Authorization: Bearer TOKEN' };
      }
      return { kind: 'ok', session: { id: fromCookie, setCookie: null, bearer: false } };
    }
    return { kind: 'ok', session: fromCookie === null ? this.newCookie(request) : { id: fromCookie, setCookie: null, bearer: false } };
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

  private newCookie(request: RequestFacts): Session {
    const id = randomBytes(16).toString('base64url');
    // Secure only where the browser came over https (a proxy in front); on plain http a
    // Secure cookie would never come back.
    const secure = request.origin?.startsWith('https:') ? '; Secure' : '';
    const value = `${id}.${this.mac(`session:${id}`)}`;
    return { id, bearer: false, setCookie: `${SESSION_COOKIE}=${value}; Path=/; HttpOnly; SameSite=Strict${secure}` };
  }

  private sessionFromCookie(header: string | undefined): string | null {
    const value = parseCookies(header).get(SESSION_COOKIE);
    if (!value) return null;
    const [id, mac] = value.split('.');
    if (!id || !mac || !same(mac, this.mac(`session:${id}`))) return null;
    return id;
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
