/**
 * A run's resource limits: for each, the smaller of the task's and its group's (the claim
 * computes it), so a task can tighten its group's limit but never loosen it. null: none.
 */
export interface TaskLimits {
  /** Bytes of address space (RLIMIT_AS). */
  memoryMax: number | null;
  /** Seconds of CPU time (RLIMIT_CPU: SIGXCPU at the limit, SIGKILL a second later). */
  cpuSecondsMax: number | null;
  /** Open file descriptors (RLIMIT_NOFILE). */
  openFilesMax: number | null;
  /** Processes of the user the task runs as, all of them, not only the task's (RLIMIT_NPROC). */
  pidsMax: number | null;
  /** CPUs' worth of time (cpu.max), where the run has a cgroup with the cpu controller. */
  cpuMax?: number | null;
}

export const NO_LIMITS: TaskLimits = { memoryMax: null, cpuSecondsMax: null, openFilesMax: null, pidsMax: null };

export function hasLimits(l: TaskLimits): boolean {
  return l.memoryMax !== null || l.cpuSecondsMax !== null || l.openFilesMax !== null || l.pidsMax !== null;
}

/** Linux's resource numbers (the generic ones: x86, arm, riscv; not mips, sparc, alpha). */
const RLIMIT_CPU = 0;
const RLIMIT_NPROC = 6;
const RLIMIT_NOFILE = 7;
const RLIMIT_AS = 9;

export interface RLimit {
  resource: number;
  soft: bigint;
  hard: bigint;
}

/** The setrlimit calls the spawn helper makes in the child, before exec. */
export function rlimits(l: TaskLimits): RLimit[] {
  const out: RLimit[] = [];
  const add = (resource: number, soft: number, hard = soft): void => {
    out.push({ resource, soft: BigInt(soft), hard: BigInt(hard) });
  };
  if (l.memoryMax !== null) add(RLIMIT_AS, l.memoryMax);
  // The hard limit a second later: a task that catches SIGXCPU is then killed.
  if (l.cpuSecondsMax !== null) add(RLIMIT_CPU, l.cpuSecondsMax, l.cpuSecondsMax + 1);
  if (l.openFilesMax !== null) add(RLIMIT_NOFILE, l.openFilesMax);
  if (l.pidsMax !== null) add(RLIMIT_NPROC, l.pidsMax);
  return out;
}

/** The same limits for the fallback spawner: util-linux prlimit sets them, then execs argv. */
export function prlimitArgv(l: TaskLimits, argv: string[]): string[] {
  const args = ['prlimit'];
  if (l.memoryMax !== null) args.push(`--as=${l.memoryMax}`);
  if (l.cpuSecondsMax !== null) args.push(`--cpu=${l.cpuSecondsMax}:${l.cpuSecondsMax + 1}`);
  if (l.openFilesMax !== null) args.push(`--nofile=${l.openFilesMax}`);
  if (l.pidsMax !== null) args.push(`--nproc=${l.pidsMax}`);
  return [...args, '--', ...argv];
}

/** "memory 67108864 bytes (address space), CPU 2 s, open files 20, processes 50". */
export function describeLimits(l: TaskLimits): string {
  const parts: string[] = [];
  if (l.memoryMax !== null) parts.push(`memory ${l.memoryMax} bytes (address space)`);
  if (l.cpuSecondsMax !== null) parts.push(`CPU ${l.cpuSecondsMax} s`);
  if (l.openFilesMax !== null) parts.push(`open files ${l.openFilesMax}`);
  if (l.pidsMax !== null) parts.push(`processes ${l.pidsMax}`);
  return parts.join(', ');
}

/**
 * The first line of a failed run's error when a limit explains it. SIGXCPU can only be the
 * CPU limit. Past a memory, file or process limit the kernel refuses the call inside the
 * task, which then fails its own way (an exit code, often SIGSEGV or SIGABRT): the node cannot
 * tell that from another failure, so it says which limits were in force.
 */
export function limitNote(l: TaskLimits, signal: string | null, usage?: { userMs: number; systemMs: number }): string | null {
  if (!hasLimits(l)) return null;
  if (signal === 'SIGXCPU' && l.cpuSecondsMax !== null) return `CPU time limit of ${l.cpuSecondsMax} s reached`;
  if (signal === 'SIGKILL' && l.cpuSecondsMax !== null && usage && usage.userMs + usage.systemMs >= l.cpuSecondsMax * 1000) {
    return `CPU time hard limit of ${l.cpuSecondsMax + 1} s reached`;
  }
  return `it ran under the limits: ${describeLimits(l)}`;
}
