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

export function print(io: CliIo, text: string): void {
  io.stdout.write(text.endsWith('\n') ? text : `${text}\n`);
}

export function printJson(io: CliIo, value: unknown): void {
  io.stdout.write(`${JSON.stringify(value, null, 2)}\n`);
}
