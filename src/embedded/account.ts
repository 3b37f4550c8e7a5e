// Who the embedded PostgreSQL runs as. PostgreSQL refuses to run as root, so a root process
// runs it as the "postgres" user, which it creates (a system user with no login) if missing.
import { execFileSync } from 'node:child_process';
import { EmbeddedError } from './errors.js';

export interface ServerAccount {
  name: string;
  uid: number;
  gid: number;
}

const NAME = 'postgres';

/** null: the server runs as this process's own user. */
export function serverAccount(): ServerAccount | null {
  if (process.getuid?.() !== 0) return null;
  return lookUp(NAME) ?? create(NAME);
}

function lookUp(name: string): ServerAccount | null {
  try {
    const id = (flag: string): number => Number(execFileSync('id', [flag, name], { stdio: ['ignore', 'pipe', 'ignore'] }).toString().trim());
    const uid = id('-u');
    const gid = id('-g');
    return Number.isInteger(uid) && Number.isInteger(gid) ? { name, uid, gid } : null;
  } catch {
    return null;
  }
}

function create(name: string): ServerAccount {
  // useradd (most distributions), with the group when it already exists; adduser (BusyBox, Alpine).
  const attempts: Array<[string, string[]]> = [
    ['useradd', ['--system', '--user-group', '--no-create-home', '--home-dir', '/nonexistent', '--shell', '/usr/sbin/nologin', name]],
    ['useradd', ['--system', '--gid', name, '--no-create-home', '--home-dir', '/nonexistent', '--shell', '/usr/sbin/nologin', name]],
    ['adduser', ['-S', '-D', '-H', '-s', '/sbin/nologin', name]],
  ];
  let reason = '';
  for (const [command, args] of attempts) {
    try {
      execFileSync(command, args, { stdio: ['ignore', 'ignore', 'pipe'] });
    } catch (error) {
      const e = error as NodeJS.ErrnoException & { stderr?: Buffer };
      reason ||= e.code === 'ENOENT' ? `no ${command}` : (e.stderr?.toString().trim().split('\n')[0] ?? e.message);
    }
    // Also covers another process that created it meanwhile.
    const account = lookUp(name);
    if (account) return account;
  }
  throw new EmbeddedError(
    `PostgreSQL refuses to run as root, and no "${name}" user could be created to run it (${reason}): create one (useradd --system ${name}), or run pg-tasks as a normal user`,
  );
}
