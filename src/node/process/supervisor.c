/*
 * A run's processes: the start of its leader, and its supervisor, which owns every process the
 * leader starts, directly or not (docs/lifecycle.md, "A run's processes").
 *
 * Why a supervisor: a task that calls setsid (setsid(1), daemon(3), a double fork) leaves its
 * process group, so killing the group does not end it, and its parent becomes PID 1. A child
 * subreaper (prctl PR_SET_CHILD_SUBREAPER, as tini -s and s6 do) adopts those orphans instead:
 * every process of the run stays its descendant, so it can find and kill them all. It is a fork
 * of the helper with no exec of its own, so it costs no program start.
 */
#include "spawner.h"
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <linux/sched.h>

uint32_t get_u32(const char *p) {
  const unsigned char *u = (const unsigned char *)p;
  return (uint32_t)u[0] | (uint32_t)u[1] << 8 | (uint32_t)u[2] << 16 | (uint32_t)u[3] << 24;
}

void put_u32(char *p, uint32_t v) {
  p[0] = (char)(v & 0xff); p[1] = (char)((v >> 8) & 0xff);
  p[2] = (char)((v >> 16) & 0xff); p[3] = (char)((v >> 24) & 0xff);
}

static uint64_t get_u64(const char *p) {
  return (uint64_t)get_u32(p) | (uint64_t)get_u32(p + 4) << 32;
}

/*
 * The slow path: fork, then in the child the calls posix_spawn cannot make, then exec. A
 * failing call is reported through a CLOEXEC pipe (errno and step); a successful exec closes
 * it, so the parent's read returns 0. fork, not vfork: the child calls setrlimit and setuid,
 * and the helper is a few hundred kilobytes, so the copy is cheap.
 */
static pid_t fork_leader(const struct creds *c, const char *cwd, char **argv, char **envp, int out, int ctl, int *err, int *step) {
  int ep[2];
  if (pipe2(ep, O_CLOEXEC) < 0) { *err = errno; *step = 6; return -1; }
  gid_t groups[c->ngroups ? c->ngroups : 1];
  for (uint32_t i = 0; i < c->ngroups; i++) groups[i] = (gid_t)get_u32(c->groups + 4 * i);
  pid_t pid = -1;
  int joined = 0;
#ifdef CLONE_INTO_CGROUP
  if (c->cgroup_fd >= 0) {
    /* Born in the run's cgroup (Linux 5.7+): no migration, which costs far more than the fork
       (a write to cgroup.procs takes the cgroup threadgroup lock). Like fork otherwise. */
    struct clone_args args;
    memset(&args, 0, sizeof args);
    args.flags = CLONE_INTO_CGROUP;
    args.exit_signal = SIGCHLD;
    args.cgroup = (uint64_t)c->cgroup_fd;
    pid = (pid_t)syscall(SYS_clone3, &args, sizeof args);
    joined = pid >= 0;
  }
#endif
  if (pid < 0) pid = fork();
  if (pid < 0) { *err = errno; *step = 6; close(ep[0]); close(ep[1]); return -1; }
  if (pid == 0) {
    int s = 0;
    sigset_t none;
    sigemptyset(&none);
    for (int sig = 1; sig < NSIG; sig++) signal(sig, SIG_DFL);
    sigprocmask(SIG_SETMASK, &none, NULL);
    setsid();
    int devnull = open("/dev/null", O_RDONLY);
    if (devnull >= 0 && devnull != 0) { dup2(devnull, 0); close(devnull); }
    if (out != 1) dup2(out, 1);
    if (out != 2) dup2(out, 2);
    dup2(ctl, 3); /* ctl is never 3 here (the helper's signalfd, the supervisor's status pipe) */
    if (c->cgroup_procs && !joined) {
      /* Before exec, as the helper's user: the task and all it starts are in the run's cgroup. */
      int fd = open(c->cgroup_procs, O_WRONLY | O_CLOEXEC);
      if (fd < 0 || write(fd, "0", 1) != 1) { s = 7; goto fail; }
      close(fd);
    }
    for (uint32_t i = 0; i < c->nlimits; i++) {
      const char *l = c->limits + 20 * i;
      struct rlimit rl = {(rlim_t)get_u64(l + 4), (rlim_t)get_u64(l + 12)};
      if (setrlimit((int)get_u32(l), &rl) < 0) { s = 2; goto fail; }
    }
    if (c->uid >= 0) {
      if (setgroups(c->ngroups, groups) < 0) { s = 3; goto fail; }
      if (setgid((gid_t)c->gid) < 0) { s = 4; goto fail; }
      if (setuid((uid_t)c->uid) < 0) { s = 5; goto fail; }
    }
    /* After setuid: the cwd must be usable by the user the task runs as. */
    if (cwd[0] && chdir(cwd) < 0) { s = 1; goto fail; }
    /* execvp searches the PATH of environ: the task's. */
    environ = envp;
    execvp(argv[0], argv);
    s = 0;
  fail:;
    int v[2] = {errno, s};
    (void)!write(ep[1], v, sizeof v);
    _exit(127);
  }
  close(ep[1]);
  int v[2];
  ssize_t n;
  do n = read(ep[0], v, sizeof v); while (n < 0 && errno == EINTR);
  close(ep[0]);
  if (n == (ssize_t)sizeof v) {
    waitpid(pid, NULL, 0);
    *err = v[0];
    *step = v[1];
    return -1;
  }
  return pid;
}

pid_t spawn_leader(const struct creds *c, const char *cwd, char **argv, char **envp, int out, int ctl, int *err, int *step) {
  if (c->uid >= 0 || c->nlimits > 0 || c->cgroup_procs) return fork_leader(c, cwd, argv, envp, out, ctl, err, step);
  posix_spawn_file_actions_t fa;
  posix_spawnattr_t at;
  sigset_t none, all;
  sigemptyset(&none);
  sigfillset(&all);
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
  if (out != 1) posix_spawn_file_actions_adddup2(&fa, out, 1);
  if (out != 2) posix_spawn_file_actions_adddup2(&fa, out, 2);
  /* The control channel as fd 3 (ctl is CLOEXEC and never 3: dup2 gives the task a copy it keeps). */
  posix_spawn_file_actions_adddup2(&fa, ctl, 3);
  if (cwd[0]) posix_spawn_file_actions_addchdir_np(&fa, cwd);
  posix_spawnattr_init(&at);
  /* Its own session and process group, default signal dispositions and an empty mask:
     what the helper blocks or ignores must not leak into the task. */
  posix_spawnattr_setflags(&at, POSIX_SPAWN_SETSID | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
  posix_spawnattr_setsigmask(&at, &none);
  posix_spawnattr_setsigdefault(&at, &all);
  /* posix_spawnp searches the PATH of the environment the task gets, like Node's spawn. */
  char **saved = environ;
  environ = envp;
  pid_t pid;
  int rc = posix_spawnp(&pid, argv[0], &fa, &at, argv, envp);
  environ = saved;
  posix_spawn_file_actions_destroy(&fa);
  posix_spawnattr_destroy(&at);
  if (rc != 0) { *err = rc; *step = 0; return -1; }
  return pid;
}

/* One process as /proc shows it. */
struct proc { pid_t pid, ppid, pgrp; char state; };

/* Every process of the system (a snapshot of /proc); *n set, NULL on failure. */
static struct proc *scan(size_t *n) {
  DIR *d = opendir("/proc");
  if (!d) { *n = 0; return NULL; }
  size_t cap = 256, len = 0;
  struct proc *all = malloc(cap * sizeof *all);
  struct dirent *e;
  char path[300], buf[512];
  while (all && (e = readdir(d))) {
    if (e->d_name[0] < '1' || e->d_name[0] > '9') continue;
    snprintf(path, sizeof path, "/proc/%s/stat", e->d_name);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) continue; /* it exited meanwhile */
    ssize_t r = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (r <= 0) continue;
    buf[r] = 0;
    /* pid (comm) state ppid pgrp ...: comm may hold spaces and parentheses. */
    char *rp = strrchr(buf, ')');
    struct proc p;
    if (!rp || sscanf(rp + 2, "%c %d %d", &p.state, &p.ppid, &p.pgrp) != 3) continue;
    p.pid = (pid_t)atoi(e->d_name);
    if (len == cap) {
      struct proc *more = realloc(all, (cap *= 2) * sizeof *all);
      if (!more) { free(all); all = NULL; break; }
      all = more;
    }
    all[len++] = p;
  }
  closedir(d);
  *n = all ? len : 0;
  return all;
}

static int by_pid(const void *a, const void *b) {
  pid_t x = ((const struct proc *)a)->pid, y = ((const struct proc *)b)->pid;
  return (x > y) - (x < y);
}

/*
 * Marks in `in` (one flag per entry of `all`, which it sorts by pid) the descendants of root:
 * each process's chain of parents is walked once (n log n), the answer kept for the rest.
 */
static void mark_descendants(struct proc *all, size_t n, pid_t root, char *in) {
  qsort(all, n, sizeof *all, by_pid);
  /* in[i]: 0 not known yet, 1 a descendant, 2 not, 3 on the chain being walked */
  memset(in, 0, n);
  size_t *chain = malloc((n ? n : 1) * sizeof *chain);
  if (!chain) return;
  for (size_t i = 0; i < n; i++) {
    size_t len = 0, j = i;
    char verdict = 2;
    for (;;) {
      if (in[j] == 1 || in[j] == 2) { verdict = in[j]; break; }
      if (in[j] == 3) break; /* a loop: pids reused while /proc was read */
      in[j] = 3;
      chain[len++] = j;
      if (all[j].ppid == root) { verdict = 1; break; }
      struct proc key = {all[j].ppid, 0, 0, 0};
      struct proc *parent = all[j].ppid > 1 ? bsearch(&key, all, n, sizeof *all, by_pid) : NULL;
      if (!parent) break;
      j = (size_t)(parent - all);
    }
    while (len > 0) in[chain[--len]] = verdict;
  }
  for (size_t i = 0; i < n; i++) in[i] = in[i] == 1;
  free(chain);
}

/*
 * Sends sig to every live descendant of the calling process. With a leader given, counts the
 * ones outside its process group, or all of them once it is gone (leader 0): the processes
 * that escaped it or outlived it. `seen` keeps the pids counted already (*nseen of them).
 */
static uint32_t signal_descendants(int sig, pid_t leader, pid_t **seen, size_t *nseen, size_t *capseen) {
  size_t n;
  struct proc *all = scan(&n);
  if (!all) return 0;
  char *in = calloc(n ? n : 1, 1);
  uint32_t counted = 0;
  if (in) {
    mark_descendants(all, n, getpid(), in);
    for (size_t i = 0; i < n; i++) {
      if (!in[i] || all[i].state == 'Z' || all[i].state == 'X') continue;
      kill(all[i].pid, sig);
      if (!seen || (leader != 0 && all[i].pgrp == leader)) continue;
      int known = 0;
      for (size_t k = 0; k < *nseen && !known; k++) known = (*seen)[k] == all[i].pid;
      if (known) continue;
      if (*nseen == *capseen) {
        pid_t *more = realloc(*seen, (*capseen = *capseen ? *capseen * 2 : 16) * sizeof(pid_t));
        if (!more) continue;
        *seen = more;
      }
      (*seen)[(*nseen)++] = all[i].pid;
      counted++;
    }
  }
  free(in);
  free(all);
  return counted;
}

void kill_children_except(pid_t root, const pid_t *keep, size_t nkeep) {
  size_t n;
  struct proc *all = scan(&n);
  if (!all) return;
  char *in = calloc(n ? n : 1, 1);
  if (in) {
    mark_descendants(all, n, root, in);
    /* Every descendant of root, except the kept children and their descendants. */
    for (size_t i = 0; i < n; i++) {
      if (!in[i]) continue;
      pid_t top = all[i].pid;
      for (int depth = 0; depth < 4096; depth++) {
        struct proc key = {top, 0, 0, 0};
        struct proc *p = bsearch(&key, all, n, sizeof *all, by_pid);
        if (!p || p->ppid == root) break;
        top = p->ppid;
      }
      int kept = 0;
      for (size_t k = 0; k < nkeep && !kept; k++) kept = keep[k] == top;
      if (!kept) kill(all[i].pid, SIGKILL);
    }
  }
  free(in);
  free(all);
}

static int64_t now_ms(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (int64_t)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

static void status_record(int fd, char type, const int32_t *v, int nv) {
  char rec[STATUS_LEN] = {0};
  rec[0] = type;
  for (int i = 0; i < nv && i < (STATUS_LEN - 4) / 4; i++) put_u32(rec + 4 + 4 * i, (uint32_t)v[i]);
  /* One write of less than PIPE_BUF: whole or not at all. A helper that is gone reads nothing. */
  (void)!write(fd, rec, sizeof rec);
}

struct leader_end { pid_t pid; int done, status; struct rusage ru; };

/* Reaps what has ended (blocking: waits for one first); notes the leader's end. -1: no child left. */
static int reap_children(struct leader_end *l, int block) {
  for (;;) {
    int st;
    struct rusage ru;
    pid_t pid = wait4(-1, &st, block ? 0 : WNOHANG, &ru);
    if (pid < 0 && errno == EINTR) continue;
    if (pid < 0) return -1;
    if (pid == 0) return 0;
    if (pid == l->pid) { l->done = 1; l->status = st; l->ru = ru; }
    block = 0;
  }
}

/* Writes a value to a file of the run's cgroup; -1 with errno on failure. */
static int cg_write(const char *dir, const char *file, const char *value) {
  char path[4200];
  snprintf(path, sizeof path, "%s/%s", dir, file);
  int fd = open(path, O_WRONLY | O_CLOEXEC);
  if (fd < 0) return -1;
  ssize_t n = write(fd, value, strlen(value));
  int e = errno;
  close(fd);
  errno = e;
  return n == (ssize_t)strlen(value) ? 0 : -1;
}

/* A number from a file of the run's cgroup (memory.peak), or after `key ` in it (memory.events). */
static uint64_t cg_read(const char *dir, const char *file, const char *key) {
  char path[4200], buf[1024];
  snprintf(path, sizeof path, "%s/%s", dir, file);
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return 0;
  ssize_t n = read(fd, buf, sizeof buf - 1);
  close(fd);
  if (n <= 0) return 0;
  buf[n] = 0;
  const char *at = buf;
  if (key) {
    size_t k = strlen(key);
    for (at = buf; (at = strstr(at, key)); at += k)
      if ((at == buf || at[-1] == '\n') && at[k] == ' ') break;
    if (!at) return 0;
    at += k + 1;
  }
  return strtoull(at, NULL, 10);
}

void supervise(struct creds *c, const struct run_cgroup *cg, const char *cwd, char **argv, char **envp, int out, int ctl, int status, uint32_t grace_ms, pid_t helper) {
  /* The signals it acts on come through a signalfd; blocked before the death signal is set,
     so a helper that died at once cannot end it before it has killed what it must. */
  sigset_t mine;
  sigemptyset(&mine);
  sigaddset(&mine, SIGCHLD);
  sigaddset(&mine, SIGTERM);
  sigaddset(&mine, SIGUSR1);
  sigaddset(&mine, SIGHUP);
  sigprocmask(SIG_BLOCK, &mine, NULL);
  /* Its descriptors: the task's output as 1 and 2 (the leader inherits them), the status pipe
     as 3 and the task's control channel as 4 (both close-on-exec: the leader gets the control
     channel as its fd 3, spawn_leader); nothing of the helper's (its pipes to the node, other
     runs'). */
  int out_h = fcntl(out, F_DUPFD, 10), st_h = fcntl(status, F_DUPFD, 10), ctl_h = fcntl(ctl, F_DUPFD, 10);
  int devnull = open("/dev/null", O_RDONLY);
  if (out_h < 0 || st_h < 0 || ctl_h < 0 || devnull < 0) _exit(1);
  dup2(devnull, 0);
  dup2(out_h, 1);
  dup2(out_h, 2);
  dup2(st_h, 3);
  fcntl(3, F_SETFD, FD_CLOEXEC);
  dup2(ctl_h, 4);
  fcntl(4, F_SETFD, FD_CLOEXEC);
#ifdef SYS_close_range
  if (syscall(SYS_close_range, 5U, ~0U, 0U) < 0)
#endif
    for (int fd = 5; fd < 65536; fd++) close(fd);
  int sfd = signalfd(-1, &mine, SFD_CLOEXEC | SFD_NONBLOCK);
  prctl(PR_SET_PDEATHSIG, SIGHUP);
  if (getppid() != helper || sfd < 0) _exit(1);
  prctl(PR_SET_CHILD_SUBREAPER, 1);

  int err = 0, step = 0;
  struct leader_end l = {0};
  /* The run's cgroup, named after its supervisor: limits set before the leader joins it. */
  char dir[4096] = "", procs[4200];
  if (cg->parent) {
    snprintf(dir, sizeof dir, "%s/run-%d", cg->parent, (int)getpid());
    char v[64];
    int bad = mkdir(dir, 0755) < 0;
    if (!bad && cg->memory_max) {
      snprintf(v, sizeof v, "%llu", (unsigned long long)cg->memory_max);
      /* No swap beyond it where swap is accounted (the file is absent otherwise). */
      bad = cg_write(dir, "memory.max", v) < 0 || (cg_write(dir, "memory.swap.max", "0") < 0 && errno != ENOENT);
    }
    if (!bad && cg->cpu_quota) {
      snprintf(v, sizeof v, "%u 100000", cg->cpu_quota);
      bad = cg_write(dir, "cpu.max", v) < 0;
    }
    if (bad) {
      int32_t v2[2] = {errno, 7};
      rmdir(dir);
      status_record(3, 'E', v2, 2);
      _exit(0);
    }
    snprintf(procs, sizeof procs, "%s/cgroup.procs", dir);
    c->cgroup_procs = procs;
    c->cgroup_fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  }
  l.pid = spawn_leader(c, cwd, argv, envp, 1, 4, &err, &step);
  /* The control channel is the task's now: its end of file is the end of the task's copies. */
  close(4);
  if (l.pid < 0) {
    int32_t v[2] = {err, step};
    if (dir[0]) rmdir(dir);
    status_record(3, 'E', v, 2);
    _exit(0);
  }
  int32_t started[1] = {l.pid};
  status_record(3, 'P', started, 1);

  pid_t *seen = NULL;
  size_t nseen = 0, capseen = 0;
  uint32_t orphans = 0;
  int ending = 0, killing = 0;
  int64_t deadline = -1;
  for (;;) {
    int timeout = -1;
    if (deadline >= 0) {
      int64_t left = deadline - now_ms();
      timeout = left > 0 ? (int)(left > 60000 ? 60000 : left) : 0;
    }
    struct pollfd p = {sfd, POLLIN, 0};
    if (poll(&p, 1, timeout) < 0 && errno != EINTR) _exit(1);
    struct signalfd_siginfo si;
    while (read(sfd, &si, sizeof si) == (ssize_t)sizeof si) {
      if (si.ssi_signo == SIGTERM && !ending) {
        ending = 1;
        deadline = -1; /* no orphan grace now: the node's SIGUSR1 ends what is left */
        /* Every process of the run gets the SIGTERM, not only the leader's group. */
        signal_descendants(SIGTERM, 0, NULL, NULL, NULL);
      } else if (si.ssi_signo == SIGUSR1 || si.ssi_signo == SIGHUP) {
        killing = 1;
      }
    }
    int left = reap_children(&l, 0);
    if (l.done && left < 0) break; /* the leader and every other process of the run are gone */
    if (!killing && l.done && !ending) {
      /* Ending (SIGTERM): the rest of the node's kill grace is theirs too; its SIGUSR1 ends it. */
      if (grace_ms == 0) killing = 1;
      else if (deadline < 0) deadline = now_ms() + grace_ms;
      else if (now_ms() >= deadline) killing = 1;
    }
    if (!killing) continue;
    /* Kill until nothing is left: a process killed now may have had children, which the
       subreaper adopts as it dies; the next pass finds them. */
    for (;;) {
      if (!l.done) kill(-l.pid, SIGKILL);
      orphans += signal_descendants(SIGKILL, l.done ? 0 : l.pid, &seen, &nseen, &capseen);
      /* With a cgroup, also all that is in it (kernel 5.14+): after the walk, which counts. */
      if (dir[0]) cg_write(dir, "cgroup.kill", "1");
      if (reap_children(&l, 1) < 0) break;
    }
    break;
  }
  uint64_t peak = 0, oom = 0;
  if (dir[0]) {
    peak = cg_read(dir, "memory.peak", NULL);
    oom = cg_read(dir, "memory.events", "oom_kill");
  }
  struct rusage *ru = &l.ru;
  int32_t v[7] = {
    l.done ? l.status : -1,
    (int32_t)(ru->ru_utime.tv_sec * 1000 + ru->ru_utime.tv_usec / 1000),
    (int32_t)(ru->ru_stime.tv_sec * 1000 + ru->ru_stime.tv_usec / 1000),
    (int32_t)ru->ru_maxrss,
    (int32_t)orphans,
    (int32_t)(peak / 1024 > INT32_MAX ? INT32_MAX : peak / 1024),
    (int32_t)(oom > 0),
  };
  status_record(3, 'X', v, 7);
  /* After the report, so the run's end does not wait for it: empty now, but the kernel may
     take a moment to see it so. */
  if (dir[0]) for (int i = 0; i < 200 && rmdir(dir) < 0 && errno == EBUSY; i++) usleep(500);
  _exit(0);
}
