// Failures of the embedded start, each as one line that names the cause and the fix.

/** A failure of the embedded PostgreSQL whose message is the whole story: printed as is, no stack. */
export class EmbeddedError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'EmbeddedError';
  }
}

/** What a failed initdb or postgres printed, turned into a cause and a fix. */
export function describeServerOutput(output: string, where: { dataDir: string; port?: number }): string {
  const text = output.replace(/\s+/g, ' ');
  if (/No space left on device|could not extend file|ENOSPC/i.test(text)) {
    return `no space left on the device of ${where.dataDir}: free some space, or choose another --data-dir`;
  }
  if (/could not bind IPv4 address|Address already in use/i.test(text)) {
    return `port ${where.port ?? '?'} on 127.0.0.1 is already in use: choose another --port`;
  }
  if (/lock file "postmaster\.pid" already exists/.test(text)) {
    return `another PostgreSQL already runs on ${where.dataDir}: stop it first`;
  }
  if (/pre-existing shared memory block .* is still in use/.test(text)) {
    return `processes of an earlier PostgreSQL still use ${where.dataDir}: wait for them to end (or end them), then start again`;
  }
  const incompatible = /database files are incompatible with server.*?initialized by PostgreSQL version (\S+)/.exec(text);
  if (incompatible) {
    return `${where.dataDir} holds data of PostgreSQL ${incompatible[1]}, which this embedded server cannot read: move it aside or choose another --data-dir`;
  }
  if (/data directory .* has wrong ownership|has invalid permissions/.test(text)) {
    return `${where.dataDir} belongs to another user or has the wrong mode: start as its owner, or choose another --data-dir`;
  }
  if (/Permission denied/i.test(text)) {
    return `permission denied in ${where.dataDir}: choose a --data-dir this user may write (${firstError(output)})`;
  }
  return firstError(output) || 'it exited without saying why';
}

/** The most telling line of a server's output: its first FATAL/PANIC/ERROR, else its last line. */
function firstError(output: string): string {
  const lines = output.split('\n').map((l) => l.trim()).filter(Boolean);
  const line = lines.find((l) => /\b(FATAL|PANIC|ERROR)\b|^initdb: error/.test(l)) ?? lines.at(-1) ?? '';
  return line.replace(/^.*?\b(FATAL|PANIC|ERROR):\s*/, '').replace(/^initdb: error:\s*/, '');
}

/** A failed system call (mkdir, spawn, write …) as a cause and a fix. */
export function describeSystemError(error: unknown, what: string, fix: string): string {
  const e = error as NodeJS.ErrnoException;
  switch (e?.code) {
    case 'ENOSPC':
      return `${what}: no space left on the device; free some space, or ${fix}`;
    case 'EACCES':
    case 'EPERM':
      return `${what}: permission denied; ${fix}`;
    case 'EROFS':
      return `${what}: the file system is read-only; ${fix}`;
    case 'EEXIST':
    case 'ENOTDIR':
      return `${what}: a file is in the way${e.path ? ` (${e.path})` : ''}; ${fix}`;
    default:
      return `${what}: ${e?.message ?? String(error)}; ${fix}`;
  }
}
