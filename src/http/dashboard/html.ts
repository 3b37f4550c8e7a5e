// Server-rendered HTML: every value is escaped unless it is itself the output of `html`, so a
// task's command, error or output can never become markup on the page.

/** Markup that is already safe: made by `html`, or a constant of ours given to `raw`. */
export class Html {
  constructor(readonly text: string) {}
  toString(): string {
    return this.text;
  }
}

const ESCAPES: Record<string, string> = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' };

export function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (c) => ESCAPES[c]!);
}

function render(value: unknown): string {
  if (value instanceof Html) return value.text;
  if (value === null || value === undefined || value === false) return '';
  if (Array.isArray(value)) return value.map(render).join('');
  if (value instanceof Date) return escapeHtml(value.toISOString());
  if (typeof value === 'string' || typeof value === 'number' || typeof value === 'boolean' || typeof value === 'bigint') return escapeHtml(String(value));
  return escapeHtml(JSON.stringify(value) ?? '');
}

/** html`<td>${task.command}</td>`: values escaped, nested html and arrays of it kept. */
export function html(strings: TemplateStringsArray, ...values: unknown[]): Html {
  let out = strings[0]!;
  for (let i = 0; i < values.length; i++) out += render(values[i]) + strings[i + 1]!;
  return new Html(out);
}

/** A fixed piece of our own markup, never built from data. */
export function raw(text: string): Html {
  return new Html(text);
}

/** A time for people: 2026-11-30 21:13:51 UTC (database time, shown in UTC). */
export function when(value: Date | null | undefined): string {
  if (!value) return '-';
  return `${value.toISOString().replace('T', ' ').replace(/\.\d+Z$/, '')} UTC`;
}

/** A command line as a person would type it: arguments with spaces or quotes in quotes. */
export function commandLine(command: string[]): string {
  return command.map((arg) => (/^[\w@%+=:,./-]+$/.test(arg) ? arg : JSON.stringify(arg))).join(' ');
}

/** A URL path with a query string; empty values left out. */
export function href(path: string, query: Record<string, string | number | null | undefined>): string {
  const params = new URLSearchParams();
  for (const [key, value] of Object.entries(query)) {
    if (value !== null && value !== undefined && value !== '') params.set(key, String(value));
  }
  const text = params.toString();
  return text ? `${path}?${text}` : path;
}
