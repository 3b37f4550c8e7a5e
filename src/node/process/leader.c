/*
 * A run's start: its start frame, read (the layout is in spawner.c's header), and the start of
 * its first process, the leader: posix_spawn, or fork and exec where the task needs calls
 * that posix_spawn cannot make. Used by the helper (runs without a supervisor) and by the
 * supervisors.
 */
#include "spawner.h"
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <signal.h>
#include <spawn.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
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

int read_start(const char *msg, size_t len, const char *cgroup_parent, struct start *s) {
  memset(s, 0, sizeof *s);
  s->c.cgroup_fd = -1;
  if (len < 5) return EINVAL;
  s->key = get_u32(msg + 1);
  if (len < 49) return EINVAL;
  uint32_t argc = get_u32(msg + 5), envc = get_u32(msg + 9);
  s->c.uid = (int32_t)get_u32(msg + 13);
  s->c.gid = (int32_t)get_u32(msg + 17);
  s->c.ngroups = get_u32(msg + 21);
  s->c.nlimits = get_u32(msg + 25);
  s->flags = get_u32(msg + 29);
  s->grace_ms = get_u32(msg + 33);
  s->cg.parent = (s->flags & 3) == 3 ? cgroup_parent : NULL;
  s->cg.memory_max = get_u64(msg + 37);
  s->cg.cpu_quota = get_u32(msg + 45);
  size_t fixed = 49 + 4 * (size_t)s->c.ngroups + 20 * (size_t)s->c.nlimits;
  size_t nstr = 1 + (size_t)argc + envc;
  if (argc == 0 || s->c.ngroups > 65536 || s->c.nlimits > 16 || fixed > len || nstr > len - fixed) return EINVAL;
  s->c.groups = msg + 49;
  s->c.limits = s->c.groups + 4 * s->c.ngroups;
  s->argv = calloc(argc + 1, sizeof(char *));
  s->envp = calloc(envc + 1, sizeof(char *));
  if (!s->argv || !s->envp) { free_start(s); return ENOMEM; }
  const char *p = msg + fixed, *end = msg + len;
  for (size_t i = 0; i < nstr; i++) {
    const char *z = memchr(p, 0, (size_t)(end - p));
    if (!z) { free_start(s); return EINVAL; }
    /* cwd, argv..., env... */
    if (i == 0) s->cwd = p;
    else if (i <= argc) s->argv[i - 1] = (char *)p;
    else s->envp[i - 1 - argc] = (char *)p;
    p = z + 1;
  }
  return 0;
}

void free_start(struct start *s) {
  free(s->argv);
  free(s->envp);
  s->argv = s->envp = NULL;
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
    dup2(ctl, 3); /* ctl is never 3 (spawner.h): dup2 gives the task a copy without CLOEXEC */
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

