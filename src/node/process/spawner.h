/*
 * What spawner.c (the helper's protocol and loop) and supervisor.c (a run's supervisor, the
 * start of a task's first process, the process tree) share. Built together into one binary.
 */
#ifndef PG_TASKS_SPAWNER_H
#define PG_TASKS_SPAWNER_H
#define _GNU_SOURCE
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* What a task needs beyond posix_spawn: another user, resource limits, a cgroup to join. */
struct creds {
  int32_t uid, gid; /* -1: keep the helper's */
  uint32_t ngroups, nlimits;
  const char *groups, *limits; /* raw, in the frame */
  const char *cgroup_procs;    /* the run's cgroup.procs, joined before exec; NULL: none */
  int cgroup_fd;               /* the run's cgroup directory, for clone3's CLONE_INTO_CGROUP */
};

/* A run's cgroup (cgroup v2, delegated to the node): set by the helper's --cgroup. */
struct run_cgroup {
  const char *parent;   /* the node's cgroup; NULL: runs get none */
  uint64_t memory_max;  /* bytes for memory.max; 0: none */
  uint32_t cpu_quota;   /* microseconds per 100 ms period for cpu.max; 0: none */
};

uint32_t get_u32(const char *p);
void put_u32(char *p, uint32_t v);

/*
 * Starts a run's first process (its leader) in a session of its own, with stdin /dev/null,
 * stdout and stderr on `out`, and fd 3 on `ctl` (the task's control channel, docs/control.md): posix_spawn, or fork when it needs credentials, limits or a
 * cgroup. Returns its pid, or -1 with the errno and the failed step (0 exec, 1 chdir,
 * 2 setrlimit, 3 setgroups, 4 setgid, 5 setuid, 6 fork or pipe, 7 the run's cgroup).
 */
pid_t spawn_leader(const struct creds *c, const char *cwd, char **argv, char **envp, int out, int ctl, int *err, int *step);

/*
 * The supervisor of one run (the child of the helper; never returns). It is a child subreaper:
 * whatever the leader starts, even in a session of its own, stays its descendant. It reports
 * on `status` (records of STATUS_LEN bytes: 'P' leader pid, 'E' errno step, 'X' wait status,
 * user ms, system ms, max rss kB, processes it killed that escaped the leader's group or
 * outlived it, the cgroup's memory.peak in kB, whether the kernel's OOM killer killed in it)
 * and exits once no process of the run is left. With a cgroup, the run's processes are in a
 * cgroup of their own (memory.max, cpu.max), killed through it too.
 *   SIGTERM  the run is ending: SIGTERM to every process of the run; then no orphan grace,
 *            but the node's kill grace (its SIGUSR1) for what is left once the leader is gone
 *   SIGUSR1  kill every process of the run now (SIGKILL), then report
 *   SIGHUP   the helper died (PR_SET_PDEATHSIG): the same
 */
#define STATUS_LEN 32
void supervise(struct creds *c, const struct run_cgroup *cg, const char *cwd, char **argv, char **envp, int out, int ctl, int status, uint32_t grace_ms, pid_t helper);

/* SIGKILLs every child of `root` that is not in `keep`, with all its descendants. */
void kill_children_except(pid_t root, const pid_t *keep, size_t nkeep);

#endif
