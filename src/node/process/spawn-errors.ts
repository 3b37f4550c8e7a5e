// What a start that failed, or a raw exit status from the spawn helper, means in words: the
// spawn helper reports errno values and wait(2) statuses; the run's error says what went wrong.
import { stat } from 'node:fs/promises';
import os from 'node:os';
import { describeLimits, type TaskLimits } from './limits.js';
import type { RunAsUser } from './run-as.js';
import type { SpawnStep } from './spawner.js';

/** A raw wait(2) status as Node reports it: an exit code, or the name of the killing signal. */
export function decodeWaitStatus(status: number): { exitCode: number | null; signal: NodeJS.Signals | null } {
  const termsig = status & 0x7f;
  if (termsig === 0) return { exitCode: (status >> 8) & 0xff, signal: null };
  const name = Object.entries(os.constants.signals).find(([, n]) => n === termsig)?.[0];
  return { exitCode: null, signal: (name ?? `SIG${termsig}`) as NodeJS.Signals };
}

export function errnoException(errno: number, program: string): NodeJS.ErrnoException {
  const code = Object.entries(os.constants.errno).find(([, n]) => n === errno)?.[0] ?? `E${errno}`;
  return Object.assign(new Error(`spawn ${program} ${code}`), { code, errno });
}

/** Node says "spawn x ENOENT" for a missing program and for a missing cwd alike. */
export async function describeSpawnError(error: NodeJS.ErrnoException, program: string, cwd: string, step: SpawnStep, user: RunAsUser | null, limits: TaskLimits): Promise<string> {
  const as = user ? ` by ${user.name} (uid ${user.uid}, gid ${user.gid})` : '';
  if (step === 'chdir') {
    if (error.code === 'ENOENT') return `working directory does not exist: ${cwd}`;
    if (error.code === 'ENOTDIR') return `working directory is not a directory: ${cwd}`;
    return `working directory is not usable${as}: ${cwd}: ${error.code}`;
  }
  if (step === 'setrlimit') return `could not apply the limits (${describeLimits(limits)}): ${error.code}`;
  if (step === 'setgroups' || step === 'setgid' || step === 'setuid') return `could not switch to ${user?.name ?? 'the user'} (${step}): ${error.code}`;
  if (step === 'fork') return `could not start ${program}: ${error.message}`;
  if (step === 'cgroup') return `could not give the run a cgroup of its own (memory.max, cpu.max, or joining it): ${error.code}`;
  if (error.code === 'EAGAIN' && limits.pidsMax !== null) return `could not start ${program}: the user it runs as already has pids_max (${limits.pidsMax}) processes`;
  if ((error.code === 'ENOMEM' || error.code === 'E2BIG') && limits.memoryMax !== null) return `could not start ${program}: memory_max (${limits.memoryMax} bytes) is too small to load it`;
  if (error.code === 'ENOENT' || error.code === 'ENOTDIR') {
    const dir = await stat(cwd).catch(() => null);
    if (!dir) return `working directory does not exist: ${cwd}`;
    if (!dir.isDirectory()) return `working directory is not a directory: ${cwd}`;
    return `command not found: ${program}`;
  }
  if (error.code === 'EACCES') return user ? `permission denied: ${program}, or its working directory ${cwd}${as}` : `permission denied: ${program}`;
  return `could not start ${program}: ${error.message}`;
}
