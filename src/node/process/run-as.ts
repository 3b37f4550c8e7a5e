import { execFile } from 'node:child_process';
import { promisify } from 'node:util';

/** A user a task may run as, resolved through the system's user database (NSS: getent, id). */
export interface RunAsUser {
  name: string;
  uid: number;
  gid: number;
  /** Supplementary groups (initgroups' list: every group the user is a member of). */
  groups: number[];
  home: string;
}

export interface RunAsOptions {
  /** Users (names or numeric ids) tasks may run as (--allow-run-as). */
  allowRunAs: string[];
  /** Root (uid 0, or group 0) may be asked for too (--allow-run-as-root). */
  allowRunAsRoot: boolean;
}

/**
 * What the node does with a run_as: the user and groups to switch to (creds null: the node's
 * own, no switch), or a refusal with the reason, which the task gets as its error.
 */
export type RunAsDecision = { user: RunAsUser; switchTo: RunAsUser | null } | { refused: string };

const run = promisify(execFile);
/** A resolution is reused this long: a user added or changed is seen within a minute. */
const CACHE_MS = 60_000;

/**
 * Decides who a task runs as. The effective run_as is the task's, else its group's (the claim
 * reads both). A run_as must name a user of --allow-run-as (by name or id; root only with
 * --allow-run-as-root); a group given after ':' must be one the user is a member of (group 0
 * only with --allow-run-as-root). A node not running as root can honour only its own user.
 */
export class RunAs {
  private readonly cache = new Map<string, { at: number; decision: Promise<RunAsDecision> }>();

  private constructor(
    private readonly options: RunAsOptions,
    /** The uids of --allow-run-as. */
    private readonly allowed: Set<number>,
    private readonly self: { uid: number; gid: number },
  ) {}

  /** Resolves the allow list once; a user that does not exist is a start-up error. */
  static async create(options: RunAsOptions): Promise<RunAs> {
    const allowed = new Set<number>();
    for (const name of options.allowRunAs) {
      const user = await lookupUser(name);
      if (!user) throw new Error(`--allow-run-as: no such user "${name}" on this machine`);
      if (user.uid === 0 && !options.allowRunAsRoot) throw new Error(`--allow-run-as ${name}: that is root; running tasks as root needs --allow-run-as-root as well`);
      allowed.add(user.uid);
    }
    return new RunAs(options, allowed, { uid: process.getuid?.() ?? -1, gid: process.getgid?.() ?? -1 });
  }

  /** No run_as allowed: what a node started without --allow-run-as has. */
  static disabled(): RunAs {
    return new RunAs({ allowRunAs: [], allowRunAsRoot: false }, new Set(), { uid: process.getuid?.() ?? -1, gid: process.getgid?.() ?? -1 });
  }

  /** For the start log. */
  describe(): string {
    const list = this.options.allowRunAs.length ? this.options.allowRunAs.join(',') : 'none';
    const root = this.options.allowRunAsRoot ? ' and root' : '';
    return this.self.uid === 0 ? `${list}${root}` : `${list}${root} (the node is not root: only its own user, uid ${this.self.uid}, can be honoured)`;
  }

  decide(runAs: string): Promise<RunAsDecision> {
    const now = Date.now();
    const hit = this.cache.get(runAs);
    if (hit && now - hit.at < CACHE_MS) return hit.decision;
    if (this.cache.size > 256) this.cache.clear();
    const decision = this.resolve(runAs).catch((error: Error) => ({ refused: `run_as ${runAs}: could not look the user up: ${error.message}` }));
    this.cache.set(runAs, { at: now, decision });
    return decision;
  }

  private async resolve(runAs: string): Promise<RunAsDecision> {
    const [userPart, groupPart] = runAs.split(':') as [string, string | undefined];
    const user = await lookupUser(userPart);
    if (!user) return { refused: `run_as ${runAs}: no such user "${userPart}" on this node` };
    const root = user.uid === 0;
    if (root ? !this.options.allowRunAsRoot : !this.allowed.has(user.uid)) {
      const list = this.options.allowRunAs.join(',') || 'none';
      return { refused: `run_as ${runAs} is not allowed on this node (--allow-run-as: ${list}${root ? '; root needs --allow-run-as-root' : ''})` };
    }
    let gid = user.gid;
    if (groupPart !== undefined) {
      const group = await lookupGroup(groupPart);
      if (group === null) return { refused: `run_as ${runAs}: no such group "${groupPart}" on this node` };
      if (group !== user.gid && !user.groups.includes(group)) return { refused: `run_as ${runAs}: ${user.name} is not a member of group ${groupPart}` };
      if (group === 0 && !root && !this.options.allowRunAsRoot) return { refused: `run_as ${runAs}: group 0 (root) needs --allow-run-as-root` };
      gid = group;
    }
    const resolved = { ...user, gid };
    if (this.self.uid === 0) return { user: resolved, switchTo: resolved };
    if (user.uid === this.self.uid && gid === this.self.gid) return { user: resolved, switchTo: null };
    return { refused: `run_as ${runAs}: the node runs as uid ${this.self.uid}, not root, so it cannot switch to ${user.name} (uid ${user.uid}, gid ${gid})` };
  }
}

/** getent passwd, then id -G for the groups; null: no such user. */
async function lookupUser(name: string): Promise<RunAsUser | null> {
  const line = await getent('passwd', name);
  if (line === null) return null;
  const f = line.split(':');
  if (f.length < 7) throw new Error(`unreadable passwd entry for ${name}`);
  const user = { name: f[0]!, uid: Number(f[2]), gid: Number(f[3]), home: f[5] || '/', groups: [] as number[] };
  const { stdout } = await run('id', ['-G', user.name], { timeout: 10_000 });
  user.groups = stdout.trim().split(/\s+/).filter(Boolean).map(Number).filter((g) => Number.isInteger(g));
  if (!user.groups.includes(user.gid)) user.groups.unshift(user.gid);
  return user;
}

async function lookupGroup(name: string): Promise<number | null> {
  const line = await getent('group', name);
  return line === null ? null : Number(line.split(':')[2]);
}

async function getent(database: string, key: string): Promise<string | null> {
  try {
    const { stdout } = await run('getent', [database, key], { timeout: 10_000 });
    return stdout.split('\n')[0] ?? null;
  } catch (error) {
    // getent exits 2 for a key that is not found.
    if ((error as { code?: unknown }).code === 2) return null;
    throw error;
  }
}
