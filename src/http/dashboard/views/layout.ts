// The frame of every page: navigation, the database it shows, a notice or a refusal, and the
// script that keeps the live parts current.
import { html, type Html } from '../html.js';

export interface PageContext {
  /** user@host:port/database: never the password. */
  database: string;
  schema: string;
  /** The CSRF token the page's forms carry. */
  csrf: string;
  /** What the last action did, or why it was refused (from the redirect after a POST). */
  notice: string | null;
  error: string | null;
}

const NAV: Array<[string, string]> = [['/tasks', 'Tasks'], ['/workers', 'Workers'], ['/schedules', 'Schedules'], ['/groups', 'Groups']];

export function page(ctx: PageContext, title: string, current: string, body: Html): Html {
  return html`<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>${title} · pg-tasks</title>
<link rel="stylesheet" href="/static/style.css">
<script src="/static/live.js" defer></script>
</head>
<body data-csrf="${ctx.csrf}">
<header>
  <strong>pg-tasks</strong>
  <nav>${NAV.map(([path, name]) => html`<a href="${path}"${path === current ? html` aria-current="page"` : ''}>${name}</a>`)}</nav>
  <span class="where" title="database and schema">${ctx.database} · ${ctx.schema}</span>
  <span class="live-state" id="live-state" title="live updates">connecting…</span>
</header>
<main>
${ctx.notice ? html`<p class="notice" role="status">${ctx.notice}</p>` : ''}
${ctx.error ? html`<p class="error" role="alert">${ctx.error}</p>` : ''}
${body}
</main>
</body>
</html>`;
}

/** A POST form of one button (cancel, queue…), carrying the CSRF token and where to return. */
export function actionButton(ctx: PageContext, action: string, label: string, back: string, extra: Html | string = ''): Html {
  return html`<form method="post" action="${action}" class="inline"><input type="hidden" name="csrf" value="${ctx.csrf}"><input type="hidden" name="back" value="${back}">${extra}<button type="submit">${label}</button></form>`;
}

/** A state code with its colour. */
export function stateBadge(state: string): Html {
  return html`<span class="state state-${state}">${state}</span>`;
}
