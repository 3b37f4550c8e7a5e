/*
 * The helper's pool of supervisors (supervisor.c). A supervised run goes to an idle one, or to
 * one forked for it; each has one run at a time, from the start frame it is sent to its
 * report of the run's end, and is then free for the next. So the pool is as large as the
 * most runs the node has had at once, and a start costs a frame on a socket, not a fork.
 */
#include "spawner.h"
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

struct sup {
  pid_t pid;     /* 0 once reaped */
  pid_t born;    /* its pid, kept once reaped: its run's 'P' may be read after */
  int sock;      /* the helper's end of its socket; -1 once closed (the slot is free once both are) */
  int busy;      /* it has a run (key) */
  int lost;      /* it ended with a run: what the run left is the helper's to kill */
  int dead;      /* let go by the helper: no run is given to it, its end is read as any other */
  uint32_t key;
  char rec[STATUS_LEN];
  size_t reclen; /* of a record read in part */
};

static struct sup *sups;
static size_t nsups;

/* A new supervisor in a free slot of the pool; -1 with errno. */
static int fork_supervisor(const char *cgroup_parent, pid_t helper) {
  size_t i = 0;
  while (i < nsups && (sups[i].pid != 0 || sups[i].sock >= 0)) i++;
  if (i == nsups) {
    struct sup *more = realloc(sups, (nsups + 1) * sizeof *sups);
    if (!more) return -1;
    sups = more;
    nsups++;
    sups[i] = (struct sup){0, 0, -1, 0, 0, 0, 0, {0}, 0};
  }
  int sv[2];
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0) return -1;
  pid_t pid = fork();
  if (pid == 0) supervisor_main(sv[1], cgroup_parent, helper);
  int e = errno;
  close(sv[1]);
  if (pid < 0) { close(sv[0]); errno = e; return -1; }
  fcntl(sv[0], F_SETFL, O_NONBLOCK);
  sups[i] = (struct sup){pid, pid, sv[0], 0, 0, 0, 0, {0}, 0};
  return (int)i;
}

/* Sends a start frame to a supervisor, with the run's pipes attached. 0, or -1 (it cannot take it). */
static int send_start(struct sup *s, const char *msg, size_t len, int out, int ctl) {
  char head[4];
  put_u32(head, (uint32_t)len);
  struct iovec iov[2] = {{head, 4}, {(char *)msg, len}};
  union { struct cmsghdr h; char b[CMSG_SPACE(2 * sizeof(int))]; } cm;
  memset(&cm, 0, sizeof cm);
  struct msghdr m = {0};
  m.msg_iov = iov;
  m.msg_iovlen = 2;
  m.msg_control = cm.b;
  m.msg_controllen = sizeof cm.b;
  struct cmsghdr *c = CMSG_FIRSTHDR(&m);
  c->cmsg_level = SOL_SOCKET;
  c->cmsg_type = SCM_RIGHTS;
  c->cmsg_len = CMSG_LEN(2 * sizeof(int));
  int fds[2] = {out, ctl};
  memcpy(CMSG_DATA(c), fds, sizeof fds);
  size_t sent = 0, total = 4 + len;
  int waits = 0;
  /* A task of the node's user may have stopped this idle supervisor (they are all the helper's
     children): it would never read the frame, and the run would hang unreported. */
  kill(s->pid, SIGCONT);
  while (sent < total) {
    ssize_t w = sendmsg(s->sock, &m, MSG_NOSIGNAL);
    if (w < 0 && errno == EINTR) continue;
    if (w < 0 && errno == EAGAIN && waits < 100) {
      /* A frame larger than the socket holds (a big environment): the idle supervisor reads
         it meanwhile. One that takes nothing for 10 s is let go. */
      waits++;
      struct pollfd p = {s->sock, POLLOUT, 0};
      poll(&p, 1, 100);
      continue;
    }
    if (w <= 0) return -1;
    waits = 0;
    sent += (size_t)w;
    m.msg_control = NULL; /* the pipes went with the first bytes */
    m.msg_controllen = 0;
    size_t skip = (size_t)w;
    while (m.msg_iovlen > 0 && skip >= m.msg_iov[0].iov_len) { skip -= m.msg_iov[0].iov_len; m.msg_iov++; m.msg_iovlen--; }
    if (m.msg_iovlen > 0) { m.msg_iov[0].iov_base = (char *)m.msg_iov[0].iov_base + skip; m.msg_iov[0].iov_len -= skip; }
  }
  return 0;
}

int pool_start(const char *msg, size_t len, uint32_t key, int out, int ctl, const char *cgroup_parent, pid_t helper) {
  for (int fresh = 0; fresh < 2; fresh++) {
    int i = -1;
    for (size_t k = 0; k < nsups && i < 0 && !fresh; k++)
      if (sups[k].pid != 0 && sups[k].sock >= 0 && !sups[k].busy && !sups[k].dead) i = (int)k;
    if (i < 0 && (i = fork_supervisor(cgroup_parent, helper)) < 0) return -1;
    if (send_start(&sups[i], msg, len, out, ctl) == 0) {
      sups[i].busy = 1;
      sups[i].key = key;
      return i;
    }
    /* Gone, or not reading: let go (its end is read as any other); the next try is a new one. */
    sups[i].dead = 1;
    kill(sups[i].pid, SIGKILL);
    shutdown(sups[i].sock, SHUT_RDWR);
  }
  errno = EPIPE;
  return -1;
}

void pool_signal(int i, uint32_t key, int sig) {
  struct sup *s = &sups[i];
  if (!s->busy || s->key != key || s->pid == 0) return;
  kill(s->pid, SIGCONT); /* a task may have stopped it */
  if (sig == SIGKILL) { kill(s->pid, SIGKILL); return; }
  char f[13];
  put_u32(f, 9);
  f[4] = 'K';
  put_u32(f + 5, key);
  put_u32(f + 9, (uint32_t)sig);
  /* Never blocks the helper: a stopped supervisor whose socket is full gets the node's SIGKILL. */
  (void)!send(s->sock, f, sizeof f, MSG_NOSIGNAL | MSG_DONTWAIT);
}

void pool_fence(void) {
  for (size_t i = 0; i < nsups; i++)
    if (sups[i].busy) pool_signal((int)i, sups[i].key, SIGUSR1);
}

size_t pool_poll(struct pollfd *p) {
  size_t n = 0;
  for (size_t i = 0; i < nsups; i++)
    if (sups[i].sock >= 0) p[n++] = (struct pollfd){sups[i].sock, POLLIN, 0};
  return n;
}

size_t pool_size(void) { return nsups; }

/* A supervisor's record: its run's start or end, passed on; an end frees it. */
static void on_record(struct sup *s, const struct pool_events *ev) {
  uint32_t key = get_u32(s->rec + 4);
  if (!s->busy || s->key != key) return;
  if (s->rec[0] == 'E' || s->rec[0] == 'X') s->busy = 0; /* nothing of the run is left */
  ev->record(key, s->rec[0], s->rec + 8, s->born);
}

static void read_one(struct sup *s, const struct pool_events *ev) {
  for (;;) {
    ssize_t n = read(s->sock, s->rec + s->reclen, sizeof s->rec - s->reclen);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno == EAGAIN) return;
    if (n > 0) {
      s->reclen += (size_t)n;
      if (s->reclen == sizeof s->rec) { on_record(s, ev); s->reclen = 0; }
      continue;
    }
    /* Its end: it died (killed by its task, as the same user?), or exits. */
    close(s->sock);
    s->sock = -1;
    s->lost = s->busy;
    s->busy = 0;
    if (s->lost) ev->lost(s->key);
    if (s->pid != 0) kill(s->pid, SIGKILL); /* its child: the pid is not used again before reaped */
    return;
  }
}

void pool_read(const struct pollfd *p, size_t n, const struct pool_events *ev) {
  for (size_t i = 0, k = 0; i < nsups && k < n; i++)
    if (sups[i].sock >= 0 && p[k++].revents) read_one(&sups[i], ev);
}

int pool_reaped(pid_t pid, int status) {
  for (size_t i = 0; i < nsups; i++) {
    if (sups[i].pid != pid) continue;
    sups[i].pid = 0;
    /* Killed, or gone with a run: its processes were adopted by the helper, which kills them. */
    return WIFSIGNALED(status) || sups[i].busy || sups[i].lost ? 1 : 0;
  }
  return -1;
}

size_t pool_pids(pid_t *out) {
  size_t n = 0;
  for (size_t i = 0; i < nsups; i++) if (sups[i].pid != 0) out[n++] = sups[i].pid;
  return n;
}
