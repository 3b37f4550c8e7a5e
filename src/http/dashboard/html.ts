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

// Terminal escape sequences: CSI (ESC [ … final byte), OSC (ESC ] … BEL or ESC \), and any other
// ESC + one character. Output and errors carry them (colours, cursor moves); a page shows none.
// eslint-disable-next-line no-control-regex
const ESCAPE_SEQUENCE = /\x1b(?:\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(?:\x07|\x1b\\)|[@-Z\\-_])/g;
// Control characters other than tab and newline show as boxes.
// eslint-disable-next-line no-control-regex
const CONTROL = /[\x00-\x08\x0b-\x1f\x7f]/g;

/** Text as a person reads it: escape sequences and control characters taken out. */
export function plainText(text: string): string {
  return text.replace(ESCAPE_SEQUENCE, '').replace(CONTROL, '');
}

/** A command line longer than this is clipped on the lists, with the rest behind "show all". */
export const COMMAND_SHOWN = 160;

/** A command for a list: whole when short, else its start and a "show all" that opens the rest. */
export function clippedCommand(command: string[]): Html {
  const text = commandLine(command);
  if (text.length <= COMMAND_SHOWN) return html`<code>${text}</code>`;
  return html`<details class="show-all"><summary><code>${text.slice(0, COMMAND_SHOWN)}…</code> <span class="hint">show all (${text.length} characters)</span></summary><code>${text}</code></details>`;
}

/** The first line of an error for a table cell, the whole of it on hover. */
export function errorCell(error: string | null): Html {
  if (!error) return html`<td class="error-cell"></td>`;
  const text = plainText(error);
  return html`<td class="error-cell" title="${text}">${text.split('\n')[0]}</td>`;
}
