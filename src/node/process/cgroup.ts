import { mkdirSync, readdirSync, readFileSync, rmdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { isProcessAlive } from './process-group.js';

/** Nodes of this process that made a cgroup (tests run several in one process). */
let made = 0;

/**
 * The node's cgroup (cgroup v2), where its runs get cgroups of their own: the node's own
 * cgroup must be writable by it (delegated: systemd's Delegate=yes, a container's cgroup
 * namespace, or root). The node makes `pg-tasks-<pid>-<n>` in it and enables for its children
 * the controllers it has (memory, cpu, pids): memory_max is then the run's memory.max (all its
 * processes together, 'oom' when the kernel's OOM killer ends it, memory.peak recorded),
 * cpu_max its cpu.max. A run's supervisor makes `run-<key>` under it for the run (supervisor.c).
 */
export class NodeCgroup {
  /** Made by create(). */
  constructor(
    /** The node's cgroup, e.g. /sys/fs/cgroup/system.slice/pg-tasks.service/pg-tasks-4242. */
    readonly dir: string,
    /** The controllers enabled for the runs' cgroups. */
    readonly controllers: string[],
  ) {}

  /** The node's cgroup, made now; or why there is none (logged at start). */
  static create(): NodeCgroup | { reason: string } {
    if (process.platform !== 'linux') return { reason: 'not Linux' };
    let own: string;
    let mountAt: string;
    try {
      const mount = readFileSync('/proc/self/mountinfo', 'utf8').split('\n').map((line) => line.split(' ')).find((f) => f[f.indexOf('-') + 1] === 'cgroup2');
      if (!mount) return { reason: 'no cgroup v2 hierarchy is mounted' };
      const line = readFileSync('/proc/self/cgroup', 'utf8').split('\n').find((l) => l.startsWith('0::'));
      if (!line) return { reason: 'the node is in no cgroup v2 group' };
      // mountinfo: the mount's root in the hierarchy (field 4) and its mount point (field 5).
      const [root, at] = [mount[3]!, mount[4]!];
      const inside = line.slice(3);
      if (!(inside + '/').startsWith(root === '/' ? '/' : `${root}/`)) return { reason: `the node's cgroup ${inside} is not under the mount of ${root}` };
      own = path.join(at, inside.slice(root === '/' ? 0 : root.length));
      mountAt = at;
    } catch (error) {
      return { reason: (error as Error).message };
    }
    const at = mountAt;
    // The node's own cgroup holds the node, so its children may have no controllers (cgroup
    // v2 allows them only below a cgroup without processes), unless it is the root. Its parent
    // may, where it is delegated too (systemd's DelegateSubgroup= puts the service's process
    // in a child of its delegated cgroup): the first with the memory or cpu controller wins.
    const candidates = [own, ...(own !== at && path.dirname(own).startsWith(at) ? [path.dirname(own)] : [])];
    let fallback: NodeCgroup | null = null;
    let reason = `${own} is not delegated to this node`;
    for (const parent of candidates) {
      const made = makeIn(parent);
      if (typeof made === 'string') {
        if (parent === own) reason = made;
        continue;
      }
      if (made.has('memory') || made.has('cpu')) {
        fallback?.remove();
        return made;
      }
      if (fallback) made.remove();
      else fallback = made;
    }
    return fallback ?? { reason };
  }

  has(controller: 'memory' | 'cpu' | 'pids'): boolean {
    return this.controllers.includes(controller);
  }

  describe(): string {
    return `${this.dir} (controllers: ${this.controllers.join(', ') || 'none: runs are killed through it, limits stay rlimits'})`;
  }

  /** When the node stops: its runs' cgroups are gone by then (their supervisors remove them). */
  remove(): void {
    removeTree(this.dir);
  }
}

/** A cgroup for a node in `parent`, with the controllers it can enable for runs; or why not. */
function makeIn(parent: string): NodeCgroup | string {
  removeStale(parent);
  const dir = path.join(parent, `pg-tasks-${process.pid}-${++made}`);
  try {
    mkdirSync(dir);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    return `${parent} is not delegated to this node (${code === 'EEXIST' ? 'exists' : code})`;
  }
  let available: string[] = [];
  try {
    available = readFileSync(path.join(dir, 'cgroup.controllers'), 'utf8').trim().split(/\s+/).filter(Boolean);
  } catch {
    // not a cgroup after all
    removeTree(dir);
    return `${parent} is not a cgroup v2 directory`;
  }
  const enabled: string[] = [];
  for (const c of ['memory', 'cpu', 'pids']) {
    if (!available.includes(c)) continue;
    try {
      writeFileSync(path.join(dir, 'cgroup.subtree_control'), `+${c}`);
      enabled.push(c);
    } catch {
      // not delegated to us; the runs go without it
    }
  }
  return new NodeCgroup(dir, enabled);
}

/** The cgroups of nodes that died without removing theirs (SIGKILL): empty once their runs are. */
function removeStale(own: string): void {
  let names: string[];
  try {
    names = readdirSync(own).filter((n) => /^pg-tasks-\d+-\d+$/.test(n));
  } catch {
    return;
  }
  for (const name of names) {
    const pid = Number(name.split('-')[2]);
    if (pid !== process.pid && !isProcessAlive(pid)) removeTree(path.join(own, name));
  }
}

function removeTree(dir: string): void {
  try {
    for (const entry of readdirSync(dir, { withFileTypes: true })) if (entry.isDirectory()) removeTree(path.join(dir, entry.name));
    rmdirSync(dir);
  } catch {
    // populated (a run still ending) or gone: left as it is
  }
}
