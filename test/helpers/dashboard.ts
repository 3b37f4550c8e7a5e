// The dashboard's tests over HTTP and in Chromium: a session (cookie and CSRF token) without a
// browser, its requests, and a browser page that records every failed request and console error.
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import type { TestContext } from 'node:test';
import { chromium, type Browser, type Page } from 'playwright-core';
import type { DashboardServer } from '../../src/http/dashboard/index.js';

export const CHROMIUM = process.env.PGTASKS_CHROMIUM ?? '/usr/bin/chromium';
/** Liveness bounds for the browser's waits, not measures. */
export const WAIT = { timeout: 20_000 };

export const at = (server: DashboardServer): string => `http://127.0.0.1:${server.port}`;

/** The system's Chromium, or null when it is not installed. */
export async function launchChromium(): Promise<Browser | null> {
  if (!existsSync(CHROMIUM)) return null;
  // Chromium's sandbox refuses to run as root.
  return chromium.launch({ executablePath: CHROMIUM, headless: true, args: process.getuid?.() === 0 ? ['--no-sandbox'] : [] });
}

/** Whether the browser is there; if not, the test is skipped with a line that says why. */
export function needBrowser(t: TestContext, browser: Browser | null): browser is Browser {
  if (!browser) t.skip(`chromium not found at ${CHROMIUM}: install it with apt-get install chromium (or set PGTASKS_CHROMIUM)`);
  return browser !== null;
}

export interface Session {
  base: string;
  cookie: string;
  csrf: string;
}

/** A browser-less session: the cookie (from ?token= when given) and the CSRF token its pages carry. */
export async function session(server: DashboardServer, token?: string): Promise<Session> {
  const base = at(server);
  const entry = await fetch(`${base}/tasks${token ? `?token=${token}` : ''}`, { redirect: 'manual' });
  const cookie = (entry.headers.get('set-cookie') ?? '').split(';')[0]!;
  assert.match(cookie, /^pgtasks_session=/);
  const page = await (await fetch(`${base}/tasks`, { headers: { cookie } })).text();
  return { base, cookie, csrf: /data-csrf="([^"]+)"/.exec(page)![1]! };
}

export async function get(s: Session, path: string): Promise<{ status: number; text: string }> {
  const response = await fetch(s.base + path, { headers: { cookie: s.cookie } });
  return { status: response.status, text: await response.text() };
}

/** A form POST of the session (its CSRF token added); the redirect is not followed. */
export async function post(s: Session, path: string, fields: Record<string, string>, headers: Record<string, string> = {}): Promise<Response> {
  return fetch(s.base + path, {
    method: 'POST',
    redirect: 'manual',
    headers: { cookie: s.cookie, 'content-type': 'application/x-www-form-urlencoded', ...headers },
    body: new URLSearchParams({ csrf: s.csrf, ...fields }).toString(),
  });
}

/** The flash message a POST's redirect carries, as the next page shows it. */
export async function after303(s: Session, response: Response): Promise<string> {
  assert.equal(response.status, 303, await response.clone().text());
  const flash = (response.headers.get('set-cookie') ?? '').split(';')[0]!;
  const page = await fetch(s.base + response.headers.get('location')!, { headers: { cookie: `${s.cookie}; ${flash}` } });
  const text = await page.text();
  return (/<p class="(?:notice|error)" role="(?:status|alert)">([^<]*)<\/p>/.exec(text)?.[1] ?? '').replaceAll('&#39;', "'");
}

export function ids(page: string): number[] {
  return [...page.matchAll(/<tr data-id="(\d+)"/g)].map((m) => Number(m[1]));
}

/** A page that records every failed request, every 4xx/5xx answer and every console error. */
export async function watched(browser: Browser, viewport = { width: 1200, height: 800 }): Promise<{ page: Page; problems: string[] }> {
  const page = await browser.newPage({ viewport });
  const problems: string[] = [];
  page.on('console', (message) => {
    if (message.type() === 'error') problems.push(`console: ${message.text()} (${message.location().url})`);
  });
  page.on('pageerror', (error) => problems.push(`page error: ${error.message}`));
  page.on('requestfailed', (request) => {
    // A request the browser dropped because the page was left (the event stream, a live
    // part's fetch under way at a click) is no failure: ERR_ABORTED. Any other is.
    const reason = request.failure()?.errorText ?? '';
    if (reason !== 'net::ERR_ABORTED') problems.push(`failed: ${request.url()} ${reason}`);
  });
  page.on('response', (response) => {
    if (response.status() >= 400) problems.push(`${response.status()}: ${response.url()}`);
  });
  return { page, problems };
}

/** Goes to a page of the dashboard and waits until its live stream is open. */
export async function live(page: Page, url: string): Promise<void> {
  await page.goto(url);
  await page.locator('html[data-live="open"]').waitFor({ state: 'attached', ...WAIT });
}

