/*
 * What the spawn helper's parts share, built together into one binary:
 *   spawner.c     the helper: its protocol with the node, its loop
 *   pool.c        the helper's pool of supervisors
 *   supervisor.c  a supervisor, which runs one run at a time, run after run
 *   leader.c      a start frame, read; the start of a run's first process (its leader)
 *   proctree.c    the process tree: a process's descendants, found and signalled
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

/* A start frame ('S', spawner.c's header gives its layout), read. Points into the frame. */
struct start {
  uint32_t key, flags, grace_ms;
  struct creds c;
  struct run_cgroup cg;
  const char *cwd;
  char **argv, **envp; /* allocated: free_start() */
};
#define START_SUPERVISED 1u
#define START_CGROUP 2u

uint32_t get_u32(const char *p);
void put_u32(char *p, uint32_t v);

/* Reads a start frame of len bytes; 0, or EINVAL for one that is malformed. cgroup_parent: --cgroup. */
int read_start(const char *msg, size_t len, const char *cgroup_parent, struct start *s);
void free_start(struct start *s);

/*
 * Starts a run's first process (its leader) in a session of its own, with stdin /dev/null,
 * stdout and stderr on `out`, and fd 3 on `ctl` (the task's control channel, docs/control.md):
 * posix_spawn, or fork when it needs credentials, limits or a cgroup. `out` and `ctl` are
 * never 0 to 3. Returns its pid, or -1 with the errno and the failed step (0 exec, 1 chdir,
 * 2 setrlimit, 3 setgroups, 4 setgid, 5 setuid, 6 fork or pipe, 7 the run's cgroup).
 */
pid_t spawn_leader(const struct creds *c, const char *cwd, char **argv, char **envp, int out, int ctl, int *err, int *step);

/*
 * A supervisor (a child of the helper; never returns). The helper keeps a pool of them, and
 * gives each one run at a time over `sock` (a stream socket): a start frame, with the run's
 * output and control pipes attached (SCM_RIGHTS), then kill frames that name the run's key.
 * For each run it is a child subreaper: whatever the leader starts, even in a session of its
 * own, stays its descendant. It reports records of STATUS_LEN bytes (type, the run's key,
 * values): 'P' leader pid; 'E' errno step; 'X' wait status, user ms, system ms, max rss kB,
 * processes it killed that escaped the leader's group or outlived it, the cgroup's
 * memory.peak in kB, whether the kernel's OOM killer killed in it. 'X' comes once no process
 * of the run is left; it is then ready for the next run. With a cgroup, the run's processes
 * are in a cgroup of their own (memory.max, cpu.max), killed through it too.
 *   kill frame, SIGTERM  the run is ending: SIGTERM to every process of the run; then no
 *                        orphan grace, but the node's kill grace (its SIGUSR1) for what is
 *                        left once the leader is gone
 *   kill frame, SIGUSR1  kill every process of the run now (SIGKILL), then report
 *   SIGHUP with the helper gone (PR_SET_PDEATHSIG), or the socket's end: the same, then exit
 * A kill frame naming another key is late (its run has ended) and is ignored: that is why
 * kills go by frame and not by signal, which could reach the run after.
 */
#define STATUS_LEN 36
void supervisor_main(int sock, const char *cgroup_parent, pid_t helper);

/* The pool (pool.c), for the helper. */
struct pollfd;
struct pool_events {
  /* A supervisor's record of run `key`: 'P' (values: leader pid), 'E' or 'X' (the run is over). */
  void (*record)(uint32_t key, char type, const char *values, pid_t supervisor);
  /* The supervisor of run `key` ended before it reported the end. */
  void (*lost)(uint32_t key);
};
/* Gives a supervised run (its start frame, its pipes' write ends) to a supervisor: its index, or -1 with errno. */
int pool_start(const char *msg, size_t len, uint32_t key, int out, int ctl, const char *cgroup_parent, pid_t helper);
/* SIGTERM, SIGUSR1 (a kill frame) or SIGKILL (the supervisor itself) for run `key` of supervisor i, if it still has it. */
void pool_signal(int i, uint32_t key, int sig);
/* Every busy supervisor kills its run (the node's reaper, at its fence). */
void pool_fence(void);
/* The sockets to poll into p (pool_size() at most), then read with what poll said. */
size_t pool_size(void);
size_t pool_poll(struct pollfd *p);
void pool_read(const struct pollfd *p, size_t n, const struct pool_events *ev);
/* A child reaped: -1 not a supervisor; 1 one whose run's processes are left to kill; 0 else. */
int pool_reaped(pid_t pid, int status);
/* The supervisors' pids into out (pool_size() at most); how many. */
size_t pool_pids(pid_t *out);

/*
 * Sends sig to every live descendant of the calling process. With a leader given, counts the
 * ones outside its process group, or all of them once it is gone (leader 0): the processes
 * that escaped it or outlived it. `seen` keeps the pids counted already (*nseen of them).
 */
uint32_t signal_descendants(int sig, pid_t leader, pid_t **seen, size_t *nseen, size_t *capseen);

/* SIGKILLs every child of `root` that is not in `keep`, with all its descendants. */
void kill_children_except(pid_t root, const pid_t *keep, size_t nkeep);

#endif
