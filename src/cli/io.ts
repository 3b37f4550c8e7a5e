import type { Writable } from 'node:stream';

/** Where a command writes; injectable so commands are testable in-process. */
export interface CliIo {
  stdout: Writable;
  stderr: Writable;
}

/** An error whose message is the whole story: printed as one line, no stack. */
export class CliError extends Error {
  constructor(
    message: string,
    readonly exitCode = 1,
  ) {
    super(message);
    this.name = 'CliError';
  }
}

/**
 * A message as one line of a terminal: control characters escaped (an argument with a
 * newline or an escape sequence in it is quoted, not obeyed), and a very long one cut in the
 * middle, where the quoted value is, so that what it says about the value stays.
 */
export function oneLine(text: string, max = 1_000): string {
  // eslint-disable-next-line no-control-regex -- control characters are what it escapes
  const flat = text.replace(/\n+$/, '').replace(/[\u0000-\u001f\u007f-\u009f\u2028\u2029]/g, (c) => (c === '\n' ? '\\n' : c === '\t' ? '\\t' : `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`));
  if (flat.length <= max) return flat;
  const keep = Math.floor((max - 20) / 2);
  return `${flat.slice(0, keep)}[… ${flat.length - 2 * keep} characters …]${flat.slice(-keep)}`;
}

export function print(io: CliIo, text: string): void {
  io.stdout.write(text.endsWith('\n') ? text : `${text}\n`);
}

export function printJson(io: CliIo, value: unknown): void {
  io.stdout.write(`${JSON.stringify(value, null, 2)}\n`);
}
