// The node's log: JSON lines (what log shippers read) unless a person is watching, then one
// readable line per event through pino-pretty: colours, time, level, message, then the
// event's fields as key=value (task=12 state=CS exitCode=0).
import pino, { type Logger } from 'pino';
import pretty from 'pino-pretty';

export type LogFormat = 'auto' | 'pretty' | 'json';
export const LOG_FORMATS: LogFormat[] = ['auto', 'pretty', 'json'];

/** Fields every line carries, shown by pino's JSON but noise on a terminal. */
const HIDDEN = new Set(['level', 'time', 'msg', 'pid', 'hostname']);

/**
 * stdout: where the lines go (process.stdout, or a stream in tests); its isTTY decides 'auto'.
 * sync: JSON lines written at once, in order with what else the command prints (pretty ones
 * always are); else pino's buffered writes, which keep a busy node off the pipe's back.
 */
export function makeLogger(
  options: { logLevel: string; logFormat: LogFormat },
  stdout: NodeJS.WritableStream & { isTTY?: boolean } = process.stdout,
  sync = false,
): Logger {
  const base = { level: options.logLevel, base: { pid: process.pid } };
  const terminal = stdout.isTTY === true;
  const readable = options.logFormat === 'pretty' || (options.logFormat === 'auto' && terminal);
  if (!readable && stdout !== process.stdout) return pino(base, stdout);
  if (!readable) return sync ? pino(base, pino.destination({ dest: 1, sync: true })) : pino(base);
  return pino(
    base,
    pretty({
      destination: stdout === process.stdout ? 1 : stdout,
      sync: true,
      colorize: terminal,
      translateTime: 'SYS:HH:MM:ss.l',
      ignore: 'pid,hostname',
      hideObject: true,
      messageFormat: (log, messageKey) => [format(log[messageKey] ?? ''), fields(log).join(' ')].filter(Boolean).join('  '),
    }),
  );
}

function fields(log: Record<string, unknown>): string[] {
  const out: string[] = [];
  for (const [key, value] of Object.entries(log)) {
    if (HIDDEN.has(key) || value === undefined || value === null) continue;
    out.push(`${key}=${quote(value)}`);
  }
  return out;
}

/** The message as it is; a string field bare when it has no spaces or quotes, else quoted. */
function format(value: unknown): string {
  return typeof value === 'string' ? value : JSON.stringify(value);
}

/** An error as its message: a stack belongs in the JSON log, not on a person's screen. */
function quote(value: unknown): string {
  if (typeof value === 'object' && value !== null && typeof (value as { message?: unknown }).message === 'string') {
    return quote((value as { message: string }).message);
  }
  if (typeof value === 'string') return /^[\w.:/@+-]+$/.test(value) ? value : JSON.stringify(value);
  return JSON.stringify(value);
}
