// The frame of every page: navigation, the database it shows, a notice or a refusal, and the
// script that keeps the live parts current.
import type { Role } from '../access.js';
import { html, type Html } from '../html.js';

export interface PageContext {
  /** user@host:port/database: never the password. */
  database: string;
  schema: string;
  /** The CSRF token the page's forms carry. */
  csrf: string;
  /** A reader's page has no forms and no action buttons. */
  role: Role;
  /** The whole dashboard is read-only (--read-only), not only this session. */
  readOnly: boolean;
  /** What the last action did, or why it was refused (from the redirect after a POST). */
  notice: string | null;
  error: string | null;
}

const NAV: Array<[string, string]> = [['/', 'Overview'], ['/tasks', 'Tasks'], ['/workers', 'Workers'], ['/schedules', 'Schedules'], ['/groups', 'Groups']];

export function page(ctx: PageContext, title: string, current: string, body: Html): Html {
  return html`<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>${title} · pg-tasks</title>
<link rel="icon" href="/static/favicon.svg" type="image/svg+xml">
<link rel="stylesheet" href="/static/style.css">
<script src="/static/live.js" defer></script>
</head>
<body data-csrf="${ctx.csrf}">
<header>
  <strong>pg-tasks</strong>
  <nav>${NAV.map(([path, name]) => html`<a href="${path}"${path === current ? html` aria-current="page"` : ''}>${name}</a>`)}</nav>
  <span class="where" title="database and schema">${ctx.database} · ${ctx.schema}</span>
  ${accessBadge(ctx)}
  <span class="live-state" id="live-state" title="live updates">connecting…</span>
</header>
<main>
${ctx.notice ? html`<p class="notice" role="status"${pendingCancel(ctx.notice)}>${ctx.notice}</p>` : ''}
${ctx.error ? html`<p class="error" role="alert">${ctx.error}</p>` : ''}
${body}
</main>
</body>
</html>`;
}

/** Which access this page was served with: read-only (no actions) or operator. */
function accessBadge(ctx: PageContext): Html {
  if (ctx.role === 'operator') return html`<span class="access access-operator" title="you may change tasks and workers">operator</span>`;
  const why = ctx.readOnly ? 'this dashboard runs with --read-only' : 'you came with the reader token';
  return html`<span class="access access-reader" title="${why}: pages only, no actions">read-only</span>`;
}

/** A POST form of one button (cancel, queue…), carrying the CSRF token and where to return; none for a reader. */
export function actionButton(ctx: PageContext, action: string, label: string, back: string, extra: Html | string = ''): Html {
  if (ctx.role !== 'operator') return html``;
  return html`<form method="post" action="${action}" class="inline"><input type="hidden" name="csrf" value="${ctx.csrf}"><input type="hidden" name="back" value="${back}">${extra}<button type="submit">${label}</button></form>`;
}

/** A state as a person says it, with its colour; the code (for SQL and the CLI) on hover. */
export const STATE_WORDS: Record<string, string> = {
  DR: 'draft', AW: 'waiting', AE: 'running', AC: 'cancelling', CS: 'completed', CF: 'failed', CC: 'cancelled',
};

export function stateBadge(state: string): Html {
  return html`<span class="state state-${state}" title="${state}">${STATE_WORDS[state] ?? state}</span>`;
}

/**
 * The cancel action's notice ("task 12: cancelling …", routes/actions.ts) names a task whose
 * state the live feed follows: the page turns the notice into "cancelled" when it ends.
 */
function pendingCancel(notice: string): Html {
  const match = /^task (\d+): cancelling/.exec(notice);
  return match ? html` data-cancelling="${match[1]}"` : html``;
}
