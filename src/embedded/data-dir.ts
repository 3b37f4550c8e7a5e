// The data directory: where it may live, whether a server already runs on it, and its
// creation by initdb, which happens in a sibling directory renamed into place when complete,
// so a start killed halfway never leaves a half-made data directory behind.
import { spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { chownSync, existsSync, mkdirSync, readFileSync, readdirSync, renameSync, rmSync, statSync, unlinkSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { isProcessAlive } from '../node/process/process-group.js';
import type { ServerAccount } from './account.js';
import { stateHome, type Binaries } from './binaries.js';
import { EmbeddedError, describeServerOutput, describeSystemError } from './errors.js';

/** The database superuser of the embedded server. */
export const SUPERUSER = 'postgres';
/** Data directories made before each got a password of its own used this one. */
const LEGACY_PASSWORD = 'pg-tasks';
const PASSWORD_FILE = 'pg-tasks.password';

/**
 * The first directory above dataDir that the account cannot enter, or null. Checked with the
 * account's own uid and gid only: a server started by Node gets no supplementary groups.
 */
export function blockingDirectory(dataDir: string, account: ServerAccount | null): string | null {
  if (!account) return null;
  let dir = path.dirname(dataDir);
  const ancestors: string[] = [];
  for (;;) {
    ancestors.unshift(dir);
    const parent = path.dirname(dir);
    if (parent === dir) break;
    dir = parent;
  }
  for (const ancestor of ancestors) {
    let stat;
    try {
      stat = statSync(ancestor);
    } catch {
      return null; // made by us from here on, with the usual mode
    }
    const bit = stat.uid === account.uid ? 0o100 : stat.gid === account.gid ? 0o010 : 0o001;
    if ((stat.mode & bit) === 0) return ancestor;
  }
  return null;
}

/** Where the data of a default data directory that the account cannot reach goes instead. */
export function relocatedDataDir(dataDir: string): string {
  const project = path.basename(path.dirname(path.dirname(dataDir))).replace(/[^\w.-]+/g, '_') || 'pg-tasks';
  const hash = createHash('sha256').update(dataDir).digest('hex').slice(0, 8);
  return path.join(stateHome(), 'data', `${project}-${hash}`);
}

export interface RunningServer {
  pid: number;
  port: number | null;
}

/**
 * The server already running on dataDir, by its postmaster.pid. A lock file whose pid is now
 * some other program (pids are reused, e.g. after a container restart) is stale and removed;
 * a dead pid is left to PostgreSQL, which removes such a file itself.
 */
export function runningServer(dataDir: string): RunningServer | null {
  const lockFile = path.join(dataDir, 'postmaster.pid');
  let lines: string[];
  try {
    lines = readFileSync(lockFile, 'utf8').split('\n');
  } catch {
    return null;
  }
  const pid = Number(lines[0]);
  if (!Number.isInteger(pid) || pid <= 0) return null;
  if (!isProcessAlive(pid)) return null;
  if (process.platform === 'linux' && pid !== process.pid) {
    let command = '';
    try {
      command = readFileSync(`/proc/${pid}/cmdline`, 'utf8');
    } catch {
      // gone meanwhile, or hidden: leave it to PostgreSQL
    }
    if (command && !/postgres/.test(command.split('\0')[0] ?? '')) {
      unlinkSync(lockFile);
      return null;
    }
  }
  const port = Number(lines[3]);
  return { pid, port: Number.isInteger(port) && port > 0 ? port : null };
}

/** The superuser's password, creating the data directory first when it has none. */
export async function initialise(dataDir: string, binaries: Binaries, account: ServerAccount | null, options: { fast: boolean }): Promise<string> {
  if (existsSync(path.join(dataDir, 'PG_VERSION'))) return readPassword(dataDir);
  if (existsSync(dataDir) && readdirSync(dataDir).length > 0) {
    throw new EmbeddedError(`${dataDir} is not empty and holds no PostgreSQL data: move it aside, or choose another --data-dir`);
  }
  const parent = path.dirname(dataDir);
  const base = path.basename(dataDir);
  const temporary = path.join(parent, `${base}.initdb-${process.pid}`);
  const passwordFile = path.join(parent, `.${base}.password-${process.pid}`);
  const password = randomBytes(18).toString('base64url');
  try {
    mkdirSync(parent, { recursive: true });
    removeLeftovers(parent, base);
    mkdirSync(temporary, { mode: 0o700 });
    writeFileSync(passwordFile, `${password}\n`, { mode: 0o600 });
    if (account) {
      chownSync(temporary, account.uid, account.gid);
      chownSync(passwordFile, account.uid, account.gid);
    }
  } catch (error) {
    cleanUp(temporary, passwordFile);
    throw new EmbeddedError(describeSystemError(error, `could not create the data directory ${dataDir}`, 'choose another --data-dir'), { cause: error });
  }
  try {
    const args = [`--pgdata=${temporary}`, '--auth=scram-sha-256', `--username=${SUPERUSER}`, `--pwfile=${passwordFile}`, '--encoding=UTF8', '--no-locale'];
    if (options.fast) args.push('--no-sync');
    await runInitdb(binaries.initdb, args, account, dataDir);
    writeFileSync(path.join(temporary, PASSWORD_FILE), `${password}\n`, { mode: 0o600 });
    if (account) chownSync(path.join(temporary, PASSWORD_FILE), account.uid, account.gid);
    // Replaces an empty dataDir (e.g. one made by mkdtemp) in one step.
    if (existsSync(dataDir)) rmSync(dataDir, { recursive: true });
    renameSync(temporary, dataDir);
  } catch (error) {
    if (error instanceof EmbeddedError) throw error;
    throw new EmbeddedError(describeSystemError(error, `could not create the data directory ${dataDir}`, 'choose another --data-dir'), { cause: error });
  } finally {
    cleanUp(temporary, passwordFile);
  }
  return password;
}

function readPassword(dataDir: string): string {
  try {
    return readFileSync(path.join(dataDir, PASSWORD_FILE), 'utf8').trim();
  } catch {
    return LEGACY_PASSWORD;
  }
}

/** initdb directories and password files of starts that were killed halfway. */
function removeLeftovers(parent: string, base: string): void {
  const pattern = new RegExp(`^\\.?${base.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}\\.(initdb|password)-(\\d+)$`);
  for (const name of readdirSync(parent)) {
    const pid = Number(pattern.exec(name)?.[2]);
    if (!pid || isProcessAlive(pid)) continue;
    rmSync(path.join(parent, name), { recursive: true, force: true });
  }
}

function cleanUp(...paths: string[]): void {
  for (const p of paths) rmSync(p, { recursive: true, force: true });
}

function runInitdb(initdb: string, args: string[], account: ServerAccount | null, dataDir: string): Promise<void> {
  return new Promise((resolve, reject) => {
    let output = '';
    const child = spawn(initdb, args, {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, LC_ALL: 'C' },
      ...(account ? { uid: account.uid, gid: account.gid } : {}),
    });
    child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()));
    child.on('error', (error) => reject(new EmbeddedError(describeSystemError(error, `could not run initdb (${initdb})`, 'reinstall with npm ci'), { cause: error })));
    child.on('close', (code, signal) => {
      if (code === 0) resolve();
      else reject(new EmbeddedError(`initdb failed${signal ? ` (${signal})` : ''}: ${describeServerOutput(output, { dataDir })}`));
    });
  });
}
