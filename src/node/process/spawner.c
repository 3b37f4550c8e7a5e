/*
 * pg-tasks spawn helper: starts task processes for a node with posix_spawn.
 *
 * Why it exists: Node's child_process.spawn forks the node itself, and fork copies the page
 * tables of a ~100 MB process on every task start (about 1-2 ms here, most of it blocking the
 * node's event loop). posix_spawn from this small process uses vfork semantics: no copy.
 * The node compiles it on first use and falls back to child_process.spawn without a compiler.
 *
 * Protocol, both ways: frames of a 4-byte little-endian length, then the payload.
 * node -> helper  'S' key:u32 argc:u32 envc:u32 uid:i32 gid:i32 ngroups:u32 nlimits:u32
 *                 flags:u32 grace_ms:u32 memory_max:u64 cpu_quota_us:u32, then
 *                 groups:u32[ngroups], then nlimits of
 *                 (resource:u32 soft:u64 hard:u64), then NUL-terminated cwd, argv[argc],
 *                 env[envc]. The environment is the task's whole environment (the node builds
 *                 it clean; nothing is inherited). uid -1 and no limits: posix_spawn.
 *                 Otherwise fork, then in the child setrlimit, setgroups, setgid, setuid
 *                 (uid -1: keep the helper's), chdir, exec. flags bit 0: supervised (the run
 *                 gets a supervisor, supervisor.c; grace_ms: its orphan grace); bit 1,
 *                 with --cgroup DIR: it also gets a cgroup under DIR, with memory.max and
 *                 cpu.max ("quota 100000") when not 0.
 *                 'K' key signal:u32     to the run's supervisor, as a frame naming the run
 *                                        (a late one cannot reach its next run), after a
 *                                        SIGCONT (a task may have stopped it): SIGTERM ends
 *                                        the run gracefully, SIGUSR1 kills it; SIGKILL kills
 *                                        the supervisor itself (one that does not answer;
 *                                        a child of the helper, so no pid of another process
 *                                        can be hit), whose run the helper then kills as
 *                                        strays
 * helper -> node  'P' key pid:i32 supervisor:i32  started (pid = process group id: setsid;
 *                                        supervisor 0: none)
 *                 'E' key errno:i32 step:i32  could not start; step says which call failed:
 *                                        0 exec, 1 chdir, 2 setrlimit, 3 setgroups, 4 setgid,
 *                                        5 setuid, 6 fork or pipe
 *                 'O' key bytes...       output (stdout and stderr share one pipe)
 *                 'F' key bytes...       what the task wrote on its fd 3, the control channel
 *                                        (docs/control.md)
 *                 'X' key status:i32 user_ms:u32 system_ms:u32 maxrss_kb:u32 orphans:u32
 *                     memory_peak_kb:u32 oom:u32
 *                                        the run ended: its leader's raw wait status and what
 *                                        it used (wait4's rusage: itself and the children it
 *                                        waited for); supervised, only once every process of
 *                                        the run is gone, with how many it killed that had
 *                                        escaped the leader's group or outlived it
 *                 'L' key                the run's supervisor died before it reported the end
 *                 'C' key                its output pipe and its control pipe closed
 * Supervised runs go to the pool of supervisors (pool.c, supervisor.c), kept from run to run:
 * a start costs a frame on a socket, not a fork.
 * The helper exits when its stdin closes (the node is gone): the supervisors then kill their
 * runs (their parent-death signal), and the node's reaper kills the process groups.
 * With --subreaper the helper is a child subreaper too: the processes of a supervisor that was
 * killed are adopted by it, and it kills them. SIGUSR2 to the helper (the node's reaper, at
 * its fence) makes it tell every supervisor to kill its run.
 */
#include "spawner.h"
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/wait.h>
#include <unistd.h>

struct task {
  uint32_t key;
  pid_t pid;     /* the leader of a run without a supervisor; 0 once reaped, or supervised */
  int out;       /* read end of the output pipe, -1 once closed */
  int ctl;       /* read end of the control pipe (the task's fd 3), -1 once closed */
  int sup;       /* its supervisor (an index in the pool) until it ended; -1: none */
  int ended;     /* 'X', 'E' or 'L' sent */
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

/* One reply frame: type, key, then either a 32-bit value or raw bytes. */
static void reply(char type, uint32_t key, const char *data, size_t len) {
  char head[9];
  put_u32(head, (uint32_t)(5 + len));
  head[4] = type;
  put_u32(head + 5, key);
  write_all(head, 9);
  if (len) write_all(data, len);
}

static void reply_error(uint32_t key, int err, int step) {
  char v[8];
  put_u32(v, (uint32_t)err);
  put_u32(v + 4, (uint32_t)step);
  reply('E', key, v, 8);
}

static pid_t helper_pid;
static const char *cgroup_parent; /* --cgroup: the node's cgroup, where runs get theirs */
static int helper_subreaper;      /* --subreaper */

static void add_task(struct task t) {
  if (ntasks == captasks) {
    captasks = captasks ? captasks * 2 : 64;
    tasks = realloc(tasks, captasks * sizeof(struct task));
    if (!tasks) die("realloc");
  }
  fcntl(t.out, F_SETFL, O_NONBLOCK);
  fcntl(t.ctl, F_SETFL, O_NONBLOCK);
  tasks[ntasks++] = t;
}

static struct task *find_task(uint32_t key) {
  for (size_t i = 0; i < ntasks; i++)
    if (tasks[i].key == key && !tasks[i].ended) return &tasks[i];
  return NULL;
}

static void start_task(const char *msg, size_t len) {
  struct start s;
  int bad = read_start(msg, len, cgroup_parent, &s);
  if (bad) {
    if (len >= 5) reply_error(s.key, bad, 0);
    free_start(&s);
    return;
  }
  int fds[2], cfd[2];
  if (pipe2(fds, O_CLOEXEC) < 0) { reply_error(s.key, errno, 6); goto out; }
  if (pipe2(cfd, O_CLOEXEC) < 0) { close(fds[0]); close(fds[1]); reply_error(s.key, errno, 6); goto out; }
  if (s.flags & START_SUPERVISED) {
    /* Its supervisor starts the leader and reports on its socket. */
    int i = pool_start(msg, len, s.key, fds[1], cfd[1], cgroup_parent, helper_pid);
    int e = errno;
    close(fds[1]);
    close(cfd[1]);
    if (i < 0) { close(fds[0]); close(cfd[0]); reply_error(s.key, e, 6); goto out; }
    add_task((struct task){s.key, 0, fds[0], cfd[0], i, 0});
    goto out;
  }
  int err = 0, step = 0;
  pid_t pid = spawn_leader(&s.c, s.cwd, s.argv, s.envp, fds[1], cfd[1], &err, &step);
  close(fds[1]);
  close(cfd[1]);
  if (pid < 0) {
    close(fds[0]);
    close(cfd[0]);
    reply_error(s.key, err, step);
    goto out;
  }
  add_task((struct task){s.key, pid, fds[0], cfd[0], -1, 0});
  char v[8];
  put_u32(v, (uint32_t)pid);
  put_u32(v + 4, 0);
  reply('P', s.key, v, 8);
out:
  free_start(&s);
}

/* A supervised run's start and end, from its supervisor. */
static void on_record(uint32_t key, char type, const char *v, pid_t supervisor) {
  struct task *t = find_task(key);
  if (!t) return;
  if (type == 'P') {
    char p[8];
    memcpy(p, v, 4);
    put_u32(p + 4, (uint32_t)supervisor);
    reply('P', key, p, 8);
  } else {
    t->ended = 1;
    reply(type, key, v, type == 'E' ? 8 : 28);
  }
}

static void on_lost(uint32_t key) {
  struct task *t = find_task(key);
  if (!t) return;
  t->ended = 1;
  reply('L', key, NULL, 0);
}

static const struct pool_events events = {on_record, on_lost};

static void signal_task(const char *msg, size_t len) {
  if (len < 9) return;
  uint32_t key = get_u32(msg + 1);
  int sig = (int)get_u32(msg + 5);
  if (sig != SIGTERM && sig != SIGUSR1 && sig != SIGKILL) return;
  struct task *t = find_task(key);
  if (t && t->sup >= 0) pool_signal(t->sup, key, sig);
}

static void drop_finished(void) {
  size_t j = 0;
  for (size_t i = 0; i < ntasks; i++)
    if (tasks[i].pid != 0 || tasks[i].out >= 0 || tasks[i].ctl >= 0 || (tasks[i].sup >= 0 && !tasks[i].ended)) tasks[j++] = tasks[i];
  ntasks = j;
}

/* The pids the helper knows: leaders of runs without a supervisor, and the supervisors. */
static void kill_strays(void) {
  pid_t *keep = malloc((ntasks + pool_size() + 1) * sizeof(pid_t));
  if (!keep) return;
  size_t n = pool_pids(keep);
  for (size_t i = 0; i < ntasks; i++) if (tasks[i].pid != 0) keep[n++] = tasks[i].pid;
  kill_children_except(helper_pid, keep, n);
  free(keep);
}

static void reap(void) {
  int strays = 0;
  for (;;) {
    int status;
    struct rusage ru;
    pid_t pid = wait4(-1, &status, WNOHANG, &ru);
    if (pid <= 0) break;
    /* A supervisor: its end is read from its socket (its run, if it had one, is lost). */
    int sup = pool_reaped(pid, status);
    if (sup >= 0) {
      strays |= sup;
      continue;
    }
    size_t i = 0;
    while (i < ntasks && tasks[i].pid != pid) i++;
    if (i == ntasks) {
      /* Not ours: a process of a run whose supervisor died, adopted by this subreaper. Its
         children, if it had any, are adopted now: look again. */
      strays = 1;
      continue;
    }
    tasks[i].pid = 0;
    tasks[i].ended = 1;
    char v[28] = {0};
    put_u32(v, (uint32_t)status);
    put_u32(v + 4, (uint32_t)(ru.ru_utime.tv_sec * 1000 + ru.ru_utime.tv_usec / 1000));
    put_u32(v + 8, (uint32_t)(ru.ru_stime.tv_sec * 1000 + ru.ru_stime.tv_usec / 1000));
    put_u32(v + 12, (uint32_t)ru.ru_maxrss); /* kilobytes on Linux */
    reply('X', tasks[i].key, v, sizeof v);
  }
  if (strays && helper_subreaper) kill_strays();
}

/* Reads the output pipe ('O') or the control pipe ('F'); 'C' once both are closed. */
static void read_pipe(struct task *t, int *fd, char type) {
  static char buf[65536];
  for (;;) {
    ssize_t n = read(*fd, buf, sizeof buf);
    if (n > 0) { reply(type, t->key, buf, (size_t)n); continue; }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno == EAGAIN) return;
    close(*fd); /* EOF or error: the pipe is done */
    *fd = -1;
    if (t->out < 0 && t->ctl < 0) reply('C', t->key, NULL, 0);
    return;
  }
}

int main(int argc, char **argv) {
  signal(SIGPIPE, SIG_IGN);
  helper_pid = getpid();
  int subreaper = 0;
  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "--subreaper") == 0) subreaper = helper_subreaper = 1;
    else if (strcmp(argv[i], "--cgroup") == 0 && i + 1 < argc) cgroup_parent = argv[++i];
  }
  if (subreaper && prctl(PR_SET_CHILD_SUBREAPER, 1) < 0) die("prctl");
  sigset_t chld;
  sigemptyset(&chld);
  sigaddset(&chld, SIGCHLD);
  sigaddset(&chld, SIGUSR2);
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
    if (pcap < 2 * ntasks + pool_size() + 2) {
      pcap = (2 * ntasks + pool_size() + 2) * 2;
      pfd = realloc(pfd, pcap * sizeof(struct pollfd));
      if (!pfd) die("realloc");
    }
    pfd[0] = (struct pollfd){0, POLLIN, 0};
    pfd[1] = (struct pollfd){sfd, POLLIN, 0};
    size_t np = 2;
    for (size_t i = 0; i < ntasks; i++) {
      if (tasks[i].out >= 0) pfd[np++] = (struct pollfd){tasks[i].out, POLLIN, 0};
      if (tasks[i].ctl >= 0) pfd[np++] = (struct pollfd){tasks[i].ctl, POLLIN, 0};
    }
    size_t first_sup = np;
    np += pool_poll(pfd + np);
    if (poll(pfd, np, -1) < 0) {
      if (errno == EINTR) continue;
      die("poll");
    }
    /* Output before exits: a task's last words are sent before its 'X'. */
    for (size_t i = 0, k = 2; i < ntasks; i++) {
      /* Both looked at before either is read: a read that closes its pipe must not shift k. */
      int out_ready = tasks[i].out >= 0 && pfd[k++].revents;
      int ctl_ready = tasks[i].ctl >= 0 && pfd[k++].revents;
      if (out_ready) read_pipe(&tasks[i], &tasks[i].out, 'O');
      if (ctl_ready) read_pipe(&tasks[i], &tasks[i].ctl, 'F');
    }
    /* The supervisors' reports (after the pipes: a run's last words before its end). */
    pool_read(pfd + first_sup, np - first_sup, &events);
    if (pfd[1].revents) {
      struct signalfd_siginfo si;
      int fence = 0;
      while (read(sfd, &si, sizeof si) > 0) fence |= si.ssi_signo == SIGUSR2;
      reap();
      /* The node's reaper, at its fence: every run ends now. */
      if (fence)
        pool_fence();
    }
    drop_finished();
    if (pfd[0].revents) {
      if (incap - inlen < 65536) {
        incap = incap ? incap * 2 : 131072;
        in = realloc(in, incap);
        if (!in) die("realloc");
      }
      ssize_t n = read(0, in + inlen, incap - inlen);
      if (n == 0) { /* the node closed our stdin: it is gone or done */
        if (subreaper) kill_strays();
        return 0;
      }
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
        else if (flen > 0 && in[off + 4] == 'K') signal_task(in + off + 4, flen);
        off += 4 + flen;
      }
      memmove(in, in + off, inlen - off);
      inlen -= off;
    }
  }
}
