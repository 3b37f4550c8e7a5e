/*
 * pg-tasks spawn helper: starts task processes for a node with posix_spawn.
 *
 * Why it exists: Node's child_process.spawn forks the node itself, and fork copies the page
 * tables of a ~100 MB process on every task start (about 1-2 ms here, most of it blocking the
 * node's event loop). posix_spawn from this small process uses vfork semantics: no copy.
 * The node compiles it on first use and falls back to child_process.spawn without a compiler.
 *
 * Protocol, both ways: frames of a 4-byte little-endian length, then the payload.
 * node -> helper  'S' key:u32 argc:u32 envc:u32 uid:i32 gid:i32 ngroups:u32 nlimits:u32,
 *                 then groups:u32[ngroups], then nlimits of (resource:u32 soft:u64 hard:u64),
 *                 then NUL-terminated cwd, argv[argc], env[envc]. The environment is the
 *                 task's whole environment (the node builds it clean; nothing is inherited).
 *                 uid -1 and no limits: posix_spawn. Otherwise fork, then in the child
 *                 setrlimit, setgroups, setgid, setuid (uid -1: keep the helper's), chdir, exec.
 * helper -> node  'P' key pid:i32        started (pid = process group id: setsid)
 *                 'E' key errno:i32 step:i32  could not start; step says which call failed:
 *                                        0 exec, 1 chdir, 2 setrlimit, 3 setgroups, 4 setgid,
 *                                        5 setuid, 6 fork or pipe
 *                 'O' key bytes...       output (stdout and stderr share one pipe)
 *                 'X' key status:i32 user_ms:u32 system_ms:u32 maxrss_kb:u32
 *                                        the leader exited (raw wait status), and what it used
 *                                        (wait4's rusage: itself and the children it waited for)
 *                 'C' key                its output pipe closed
 * The helper exits when its stdin closes (the node is gone); the node's reaper, not this
 * helper, kills what the node left running.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <grp.h>
#include <sys/signalfd.h>
#include <sys/wait.h>
#include <unistd.h>

struct task {
  uint32_t key;
  pid_t pid; /* 0 once reaped */
  int out;   /* read end of the output pipe, -1 once closed */
};

static struct task *tasks;
static size_t ntasks, captasks;

static void die(const char *what) {
  const char *m = strerror(errno);
  (void)!write(2, "pg-tasks spawner: ", 18);
  (void)!write(2, what, strlen(what));
  (void)!write(2, ": ", 2);
  (void)!write(2, m, strlen(m));
  (void)!write(2, "\n", 1);
  _exit(1);
}

static void write_all(const char *p, size_t n) {
  while (n > 0) {
    ssize_t w = write(1, p, n);
    if (w < 0) {
      if (errno == EINTR) continue;
      _exit(0); /* the node is gone */
    }
    p += w;
    n -= (size_t)w;
  }
}

static void put_u32(char *p, uint32_t v) {
  p[0] = (char)(v & 0xff); p[1] = (char)((v >> 8) & 0xff);
  p[2] = (char)((v >> 16) & 0xff); p[3] = (char)((v >> 24) & 0xff);
}

static uint32_t get_u32(const char *p) {
  const unsigned char *u = (const unsigned char *)p;
  return (uint32_t)u[0] | (uint32_t)u[1] << 8 | (uint32_t)u[2] << 16 | (uint32_t)u[3] << 24;
}

/* One reply frame: type, key, then either a 32-bit value or raw bytes. */
static void reply(char type, uint32_t key, const char *data, size_t len) {
  char head[9];
  put_u32(head, (uint32_t)(5 + len));
  head[4] = type;
  put_u32(head + 5, key);
  write_all(head, 9);
  if (len) write_all(data, len);
}

static void reply_int(char type, uint32_t key, int32_t value) {
  char v[4];
  put_u32(v, (uint32_t)value);
  reply(type, key, v, 4);
}

static void reply_error(uint32_t key, int err, int step) {
  char v[8];
  put_u32(v, (uint32_t)err);
  put_u32(v + 4, (uint32_t)step);
  reply('E', key, v, 8);
}

static uint64_t get_u64(const char *p) {
  return (uint64_t)get_u32(p) | (uint64_t)get_u32(p + 4) << 32;
}

/* What a task needs beyond posix_spawn: another user, or resource limits. */
struct creds {
  int32_t uid, gid; /* -1: keep the helper's */
  uint32_t ngroups, nlimits;
  const char *groups, *limits; /* raw, in the frame */
};

/*
 * The slow path: fork, then in the child the calls posix_spawn cannot make, then exec. A
 * failing call is reported through a CLOEXEC pipe (errno and step); a successful exec closes
 * it, so the parent's read returns 0. fork, not vfork: the child calls setrlimit and setuid,
 * and the helper is a few hundred kilobytes, so the copy is cheap.
 */
static pid_t fork_task(const struct creds *c, const char *cwd, char **argv, char **envp, int out, int *err, int *step) {
  int ep[2];
  if (pipe2(ep, O_CLOEXEC) < 0) { *err = errno; *step = 6; return -1; }
  gid_t groups[c->ngroups ? c->ngroups : 1];
  for (uint32_t i = 0; i < c->ngroups; i++) groups[i] = (gid_t)get_u32(c->groups + 4 * i);
  pid_t pid = fork();
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
    dup2(out, 1);
    dup2(out, 2);
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

static void start_task(const char *msg, size_t len) {
  if (len < 29) return;
  uint32_t key = get_u32(msg + 1), argc = get_u32(msg + 5), envc = get_u32(msg + 9);
  struct creds c = {(int32_t)get_u32(msg + 13), (int32_t)get_u32(msg + 17), get_u32(msg + 21), get_u32(msg + 25), NULL, NULL};
  size_t fixed = 29 + 4 * (size_t)c.ngroups + 20 * (size_t)c.nlimits;
  size_t nstr = 1 + (size_t)argc + envc;
  if (argc == 0 || c.ngroups > 65536 || c.nlimits > 16 || fixed > len || nstr > len - fixed) { reply_error(key, EINVAL, 0); return; }
  c.groups = msg + 29;
  c.limits = c.groups + 4 * c.ngroups;
  char **strs = calloc(nstr + 2, sizeof(char *));
  if (!strs) die("calloc");
  const char *p = msg + fixed, *end = msg + len;
  for (size_t i = 0; i < nstr; i++) {
    const char *z = memchr(p, 0, (size_t)(end - p));
    if (!z) { free(strs); reply_error(key, EINVAL, 0); return; }
    strs[i] = (char *)p;
    p = z + 1;
  }
  /* strs: cwd, argv..., NULL, env..., NULL */
  char **argv = calloc(argc + 1, sizeof(char *)), **envp = calloc(envc + 1, sizeof(char *));
  if (!argv || !envp) die("calloc");
  memcpy(argv, strs + 1, argc * sizeof(char *));
  memcpy(envp, strs + 1 + argc, envc * sizeof(char *));

  int fds[2];
  if (pipe2(fds, O_CLOEXEC) < 0) { reply_error(key, errno, 6); goto out; }
  pid_t pid;
  if (c.uid >= 0 || c.nlimits > 0) {
    int err = 0, step = 0;
    pid = fork_task(&c, strs[0], argv, envp, fds[1], &err, &step);
    close(fds[1]);
    if (pid < 0) {
      close(fds[0]);
      reply_error(key, err, step);
      goto out;
    }
    goto started;
  }
  posix_spawn_file_actions_t fa;
  posix_spawnattr_t at;
  sigset_t none, all;
  sigemptyset(&none);
  sigfillset(&all);
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_adddup2(&fa, fds[1], 1);
  posix_spawn_file_actions_adddup2(&fa, fds[1], 2);
  if (strs[0][0]) posix_spawn_file_actions_addchdir_np(&fa, strs[0]);
  posix_spawnattr_init(&at);
  /* Its own session and process group, default signal dispositions and an empty mask:
     what the helper blocks or ignores must not leak into the task. */
  posix_spawnattr_setflags(&at, POSIX_SPAWN_SETSID | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
  posix_spawnattr_setsigmask(&at, &none);
  posix_spawnattr_setsigdefault(&at, &all);
  /* posix_spawnp searches the PATH of the environment the task gets, like Node's spawn. */
  char **saved = environ;
  environ = envp;
  int rc = posix_spawnp(&pid, argv[0], &fa, &at, argv, envp);
  environ = saved;
  posix_spawn_file_actions_destroy(&fa);
  posix_spawnattr_destroy(&at);
  close(fds[1]);
  if (rc != 0) {
    close(fds[0]);
    reply_error(key, rc, 0);
    goto out;
  }
started:
  fcntl(fds[0], F_SETFL, O_NONBLOCK);
  if (ntasks == captasks) {
    captasks = captasks ? captasks * 2 : 64;
    tasks = realloc(tasks, captasks * sizeof(struct task));
    if (!tasks) die("realloc");
  }
  tasks[ntasks++] = (struct task){key, pid, fds[0]};
  reply_int('P', key, pid);
out:
  free(argv);
  free(envp);
  free(strs);
}

static void drop_finished(void) {
  size_t j = 0;
  for (size_t i = 0; i < ntasks; i++)
    if (tasks[i].pid != 0 || tasks[i].out >= 0) tasks[j++] = tasks[i];
  ntasks = j;
}

static void reap(void) {
  for (;;) {
    int status;
    struct rusage ru;
    pid_t pid = wait4(-1, &status, WNOHANG, &ru);
    if (pid <= 0) return;
    for (size_t i = 0; i < ntasks; i++) {
      if (tasks[i].pid == pid) {
        tasks[i].pid = 0;
        char v[16];
        put_u32(v, (uint32_t)status);
        put_u32(v + 4, (uint32_t)(ru.ru_utime.tv_sec * 1000 + ru.ru_utime.tv_usec / 1000));
        put_u32(v + 8, (uint32_t)(ru.ru_stime.tv_sec * 1000 + ru.ru_stime.tv_usec / 1000));
        put_u32(v + 12, (uint32_t)ru.ru_maxrss); /* kilobytes on Linux */
        reply('X', tasks[i].key, v, sizeof v);
        break;
      }
    }
  }
}

static void read_output(struct task *t) {
  static char buf[65536];
  for (;;) {
    ssize_t n = read(t->out, buf, sizeof buf);
    if (n > 0) { reply('O', t->key, buf, (size_t)n); continue; }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno == EAGAIN) return;
    close(t->out); /* EOF or error: the pipe is done */
    t->out = -1;
    reply('C', t->key, NULL, 0);
    return;
  }
}

int main(void) {
  signal(SIGPIPE, SIG_IGN);
  sigset_t chld;
  sigemptyset(&chld);
  sigaddset(&chld, SIGCHLD);
  if (sigprocmask(SIG_BLOCK, &chld, NULL) < 0) die("sigprocmask");
  int sfd = signalfd(-1, &chld, SFD_CLOEXEC | SFD_NONBLOCK);
  if (sfd < 0) die("signalfd");
  fcntl(0, F_SETFD, FD_CLOEXEC);
  fcntl(1, F_SETFD, FD_CLOEXEC);

  char *in = NULL;
  size_t inlen = 0, incap = 0;
  struct pollfd *pfd = NULL;
  size_t pcap = 0;
  for (;;) {
    if (pcap < ntasks + 2) {
      pcap = (ntasks + 2) * 2;
      pfd = realloc(pfd, pcap * sizeof(struct pollfd));
      if (!pfd) die("realloc");
    }
    pfd[0] = (struct pollfd){0, POLLIN, 0};
    pfd[1] = (struct pollfd){sfd, POLLIN, 0};
    size_t np = 2;
    for (size_t i = 0; i < ntasks; i++)
      if (tasks[i].out >= 0) pfd[np++] = (struct pollfd){tasks[i].out, POLLIN, 0};
    if (poll(pfd, np, -1) < 0) {
      if (errno == EINTR) continue;
      die("poll");
    }
    /* Output before exits: a task's last words are sent before its 'X'. */
    for (size_t i = 0, k = 2; i < ntasks; i++) {
      if (tasks[i].out < 0) continue;
      if (pfd[k++].revents) read_output(&tasks[i]);
    }
    if (pfd[1].revents) {
      struct signalfd_siginfo si;
      while (read(sfd, &si, sizeof si) > 0) {}
      reap();
    }
    drop_finished();
    if (pfd[0].revents) {
      if (incap - inlen < 65536) {
        incap = incap ? incap * 2 : 131072;
        in = realloc(in, incap);
        if (!in) die("realloc");
      }
      ssize_t n = read(0, in + inlen, incap - inlen);
      if (n == 0) return 0; /* the node closed our stdin: it is gone or done */
      if (n < 0) {
        if (errno == EINTR || errno == EAGAIN) continue;
        die("read");
      }
      inlen += (size_t)n;
      size_t off = 0;
      while (inlen - off >= 4) {
        uint32_t flen = get_u32(in + off);
        if (inlen - off - 4 < flen) break;
        if (flen > 0 && in[off + 4] == 'S') start_task(in + off + 4, flen);
        off += 4 + flen;
      }
      memmove(in, in + off, inlen - off);
      inlen -= off;
    }
  }
}
