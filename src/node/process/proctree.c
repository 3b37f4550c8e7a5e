/*
 * The process tree, read from /proc: a process's descendants, found and signalled. A
 * supervisor kills its run's processes with it (they are its descendants: it is a child
 * subreaper), and the helper what a killed supervisor left.
 */
#include "spawner.h"
#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

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

/* See spawner.h. */
uint32_t signal_descendants(int sig, pid_t leader, pid_t **seen, size_t *nseen, size_t *capseen) {
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

