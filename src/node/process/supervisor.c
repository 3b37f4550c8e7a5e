/*
 * A supervisor: a fork of the spawn helper, no program of its own, that runs one run at a time,
 * run after run (docs/lifecycle.md, "A run's processes"). The helper keeps a pool of them, one
 * for each run it has at once at most.
 *
 * Why a supervisor: a task that calls setsid (setsid(1), daemon(3), a double fork) leaves its
 * process group, so killing the group does not end it, and its parent becomes PID 1. A child
 * subreaper (prctl PR_SET_CHILD_SUBREAPER, as tini -s and s6 do) adopts those orphans instead:
 * every process of the run stays its descendant, so it can find and kill them all.
 *
 * Why it outlives its run: a fork per run cost about 40 % of the throughput at 32 slots where
 * forks are dear (a VM whose page tables are virtualised: 2.74 ms a start instead of 1.71,
 * bench/containment.ts). A supervisor takes its next run only once every process of the last
 * one is gone (its report of the end says so), so runs never share one; and a kill names its
 * run's key, so a late one cannot reach the next run.
 */
#include "spawner.h"
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* The socket to the helper: fd 3, close-on-exec. */
#define SOCK 3

static int64_t now_ms(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (int64_t)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

static void status_record(uint32_t key, char type, const int32_t *v, int nv) {
  char rec[STATUS_LEN] = {0};
  rec[0] = type;
  put_u32(rec + 4, key);
  for (int i = 0; i < nv && i < (STATUS_LEN - 8) / 4; i++) put_u32(rec + 8 + 4 * i, (uint32_t)v[i]);
  /* A helper that is gone reads nothing: then the write fails, and that is all. */
  for (size_t off = 0; off < sizeof rec;) {
    ssize_t w = send(SOCK, rec + off, sizeof rec - off, MSG_NOSIGNAL);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return;
    off += (size_t)w;
  }
}

/* Reads exactly n bytes (blocking); the descriptors that come with them into fds. 0: the end. */
static int read_exact(char *p, size_t n, int *fds, int *nfds) {
  size_t got = 0;
  while (got < n) {
    union { struct cmsghdr h; char b[CMSG_SPACE(2 * sizeof(int))]; } ctl;
    struct iovec iov = {p + got, n - got};
    struct msghdr m = {0};
    m.msg_iov = &iov;
    m.msg_iovlen = 1;
    m.msg_control = ctl.b;
    m.msg_controllen = sizeof ctl.b;
    ssize_t r = recvmsg(SOCK, &m, MSG_CMSG_CLOEXEC);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return 0;
    for (struct cmsghdr *c = CMSG_FIRSTHDR(&m); c; c = CMSG_NXTHDR(&m, c)) {
      if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
      size_t k = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
      int got_fds[2];
      memcpy(got_fds, CMSG_DATA(c), (k > 2 ? 2 : k) * sizeof(int));
      for (size_t i = 0; i < k && i < 2; i++) {
        if (*nfds < 2) fds[(*nfds)++] = got_fds[i];
        else close(got_fds[i]);
      }
    }
    got += (size_t)r;
  }
  return 1;
}

/* One frame from the helper (its payload in *buf), with the descriptors it carries. 0: the helper is gone. */
static int read_frame(char **buf, size_t *cap, size_t *len, int *fds, int *nfds) {
  char head[4];
  *nfds = 0;
  if (!read_exact(head, 4, fds, nfds)) return 0;
  *len = get_u32(head);
  if (*len > *cap) {
    char *more = realloc(*buf, *len);
    if (!more) _exit(1);
    *buf = more;
    *cap = *len;
  }
  return *len == 0 || read_exact(*buf, *len, fds, nfds);
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


/* Makes the run's cgroup, named after its key (unique for the helper), with its limits. -1: errno set. */
static int make_cgroup(const struct run_cgroup *cg, uint32_t key, char *dir, size_t size) {
  snprintf(dir, size, "%s/run-%u", cg->parent, key);
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
  if (!bad) return 0;
  int e = errno;
  rmdir(dir);
  dir[0] = 0;
  errno = e;
  return -1;
}

/* Set once the helper is gone (SIGHUP, its parent-death signal, or the socket's end). */
static int helper_gone;

/*
 * One run: its leader started on the pipes the helper sent (out, ctl), then every process of it
 * waited for, or killed; reported. Returns once none is left.
 */
static void run_one(struct start *s, int out, int ctl, int sfd, pid_t helper, char **buf, size_t *cap) {
  /* s points into *buf, which the kill frames read below overwrite: what it says is used
     before the first of them (the start), but for its key, grace and cgroup. */
  int err = 0, step = 0;
  struct leader_end l = {0};
  char dir[4096] = "", procs[4200];
  if (s->cg.parent) {
    if (make_cgroup(&s->cg, s->key, dir, sizeof dir) < 0) {
      int32_t v[2] = {errno, 7};
      close(out);
      close(ctl);
      status_record(s->key, 'E', v, 2);
      return;
    }
    snprintf(procs, sizeof procs, "%s/cgroup.procs", dir);
    s->c.cgroup_procs = procs;
    s->c.cgroup_fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  }
  l.pid = spawn_leader(&s->c, s->cwd, s->argv, s->envp, out, ctl, &err, &step);
  /* The pipes are the task's now: their end of file is the end of the task's copies. */
  close(out);
  close(ctl);
  if (s->c.cgroup_fd >= 0) close(s->c.cgroup_fd);
  if (l.pid < 0) {
    int32_t v[2] = {err, step};
    if (dir[0]) rmdir(dir);
    status_record(s->key, 'E', v, 2);
    return;
  }
  int32_t started[1] = {l.pid};
  status_record(s->key, 'P', started, 1);

  pid_t *seen = NULL;
  size_t nseen = 0, capseen = 0;
  uint32_t orphans = 0;
  int ending = 0, killing = helper_gone;
  int64_t deadline = -1;
  for (;;) {
    int timeout = -1;
    if (deadline >= 0) {
      int64_t left = deadline - now_ms();
      timeout = left > 0 ? (int)(left > 60000 ? 60000 : left) : 0;
    }
    struct pollfd p[2] = {{sfd, POLLIN, 0}, {SOCK, POLLIN, 0}};
    if (poll(p, helper_gone ? 1 : 2, timeout) < 0 && errno != EINTR) _exit(1);
    struct signalfd_siginfo si;
    while (read(sfd, &si, sizeof si) == (ssize_t)sizeof si)
      if (si.ssi_signo == SIGHUP && getppid() != helper) killing = helper_gone = 1;
    if (!helper_gone && p[1].revents) {
      int fds[2], nfds = 0;
      size_t len = 0;
      if (!read_frame(buf, cap, &len, fds, &nfds)) {
        killing = helper_gone = 1;
      } else if (len >= 9 && (*buf)[0] == 'K' && get_u32(*buf + 1) == s->key) {
        int sig = (int)get_u32(*buf + 5);
        if (sig == SIGTERM && !ending) {
          ending = 1;
          deadline = -1; /* no orphan grace now: the node's SIGUSR1 ends what is left */
          /* Every process of the run gets the SIGTERM, not only the leader's group. */
          signal_descendants(SIGTERM, 0, NULL, NULL, NULL);
        } else if (sig == SIGUSR1) {
          killing = 1;
        }
      }
      /* Anything else (a late kill, a start while busy, which the helper never sends) is dropped. */
      for (int i = 0; i < nfds; i++) close(fds[i]);
    }
    int left = reap_children(&l, 0);
    if (l.done && left < 0) break; /* the leader and every other process of the run are gone */
    if (!killing && l.done && !ending) {
      /* Ending: the rest of the node's kill grace is theirs too; its SIGUSR1 ends it. */
      if (s->grace_ms == 0) killing = 1;
      else if (deadline < 0) deadline = now_ms() + s->grace_ms;
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
  free(seen);
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
  status_record(s->key, 'X', v, 7);
  /* After the report, so the run's end does not wait for it: empty now, but the kernel may
     take a moment to see it so. The helper's next start waits in the socket meanwhile. */
  if (dir[0]) for (int i = 0; i < 200 && rmdir(dir) < 0 && errno == EBUSY; i++) usleep(500);
}

void supervisor_main(int sock, const char *cgroup_parent, pid_t helper) {
  /* The signals it acts on come through a signalfd. SIGTERM and SIGUSR1 are blocked and
     dropped, and SIGHUP counts only once the helper is gone: the helper's kills come as
     frames, and a task of the same user must not end a supervisor (its own, or an idle one
     about to take a run) by a signal it can send. */
  sigset_t mine;
  sigemptyset(&mine);
  sigaddset(&mine, SIGCHLD);
  sigaddset(&mine, SIGHUP);
  sigaddset(&mine, SIGTERM);
  sigaddset(&mine, SIGUSR1);
  sigaddset(&mine, SIGUSR2);
  sigprocmask(SIG_SETMASK, &mine, NULL);
  /* Its descriptors: /dev/null as 0 to 2, the socket as 3; nothing of the helper's (its pipes
     to the node, other runs', other supervisors' sockets). */
  int devnull = open("/dev/null", O_RDWR);
  if (devnull < 0 || dup2(sock, SOCK) < 0) _exit(1);
  fcntl(SOCK, F_SETFD, FD_CLOEXEC);
  for (int fd = 0; fd < 3; fd++) dup2(devnull, fd);
#ifdef SYS_close_range
  if (syscall(SYS_close_range, 4U, ~0U, 0U) < 0)
#endif
    for (int fd = 4; fd < 65536; fd++) close(fd);
  int sfd = signalfd(-1, &mine, SFD_CLOEXEC | SFD_NONBLOCK);
  prctl(PR_SET_PDEATHSIG, SIGHUP);
  if (getppid() != helper || sfd < 0) _exit(1);
  prctl(PR_SET_CHILD_SUBREAPER, 1);

  char *buf = NULL;
  size_t cap = 0;
  for (;;) {
    struct pollfd p[2] = {{sfd, POLLIN, 0}, {SOCK, POLLIN, 0}};
    if (poll(p, 2, -1) < 0 && errno != EINTR) _exit(1);
    struct signalfd_siginfo si;
    while (read(sfd, &si, sizeof si) == (ssize_t)sizeof si)
      if (si.ssi_signo == SIGHUP && getppid() != helper) _exit(0); /* no run to end: it has none */
    /* Nothing of a run is left between runs, but a child that is not (none) is reaped. */
    while (waitpid(-1, NULL, WNOHANG) > 0) {}
    if (!p[1].revents) continue;
    int fds[2], nfds = 0;
    size_t len = 0;
    if (!read_frame(&buf, &cap, &len, fds, &nfds)) _exit(0); /* the helper let it go, or died */
    if (len >= 1 && buf[0] == 'S' && nfds == 2) {
      struct start s;
      int e = read_start(buf, len, cgroup_parent, &s);
      if (e) {
        int32_t v[2] = {e, 0};
        close(fds[0]);
        close(fds[1]);
        status_record(s.key, 'E', v, 2);
      } else {
        run_one(&s, fds[0], fds[1], sfd, helper, &buf, &cap);
      }
      free_start(&s);
      if (helper_gone) _exit(0);
      continue;
    }
    if (len >= 5 && buf[0] == 'S') {
      /* Its pipes did not come (this process is out of descriptors?): the run cannot start. */
      int32_t v[2] = {EBADF, 6};
      for (int i = 0; i < nfds; i++) close(fds[i]);
      status_record(get_u32(buf + 1), 'E', v, 2);
      continue;
    }
    /* A kill for a run that has ended: late, dropped. */
    for (int i = 0; i < nfds; i++) close(fds[i]);
  }
}
